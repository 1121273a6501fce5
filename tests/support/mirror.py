"""Which source modules have no test file at the mirrored path (tests mirror the tree).

``entangle/<folder>/<name>.py`` is mirrored by ``tests/<folder>/test_<name>.py`` or by an
aspect file ``tests/<folder>/test_<name>_<aspect>.py`` (``tests/gcd/test_train_faults.py``
mirrors ``gcd/train.py``). An aspect file belongs to the longest module name it starts
with, so ``tests/cli/test_train_display.py`` mirrors ``cli/train_display.py`` and never
``cli/train.py``. ``__init__.py`` and ``__main__.py`` are left out: a package's re-exports are
tested through the names they export, and ``python -m entangle`` is run by the CLI tests.
Templates and other data files are not modules. Runnable::

    python tests/support/mirror.py        # the unmirrored modules of this checkout
"""

from __future__ import annotations

from pathlib import Path

SKIPPED = {"__init__.py", "__main__.py"}


def modules(root: Path) -> set[str]:
    """Source modules under ``root`` (the entangle/ folder) as paths relative to it."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if p.name not in SKIPPED and "__pycache__" not in p.parts
    }


def mirrored_by(test: Path, names: set[str]) -> str | None:
    """The module stem among ``names`` (one folder's) that the test file ``test`` mirrors."""
    if not (test.name.startswith("test_") and test.suffix == ".py"):
        return None
    stem = test.stem.removeprefix("test_")
    fits = [n for n in names if stem == n or stem.startswith(n + "_")]
    return max(fits, key=len, default=None)


def unmirrored(root: Path, tests: Path) -> set[str]:
    """Modules under ``root`` (relative paths, ``ablation/cell.py``) with no mirrored test
    file under ``tests``."""
    found = modules(root)
    covered = set()
    for folder in {Path(m).parent for m in found}:
        names = {Path(m).stem for m in found if Path(m).parent == folder}
        for test in (tests / folder).glob("test_*.py"):
            name = mirrored_by(test, names)
            if name is not None:
                covered.add((folder / f"{name}.py").as_posix())
    return found - covered


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[2]
    missing = sorted(unmirrored(here / "entangle", here / "tests"))
    print(f"unmirrored: {len(missing)} of {len(modules(here / 'entangle'))}")
    for name in missing:
        print(f"  - {name}")
