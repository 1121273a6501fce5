"""Every path entangle writes, enumerated from the code, refuses a planted symlink (issue 19).

One pass runs each command (train, a resumed train, analyze, report, ablate, import-log,
export tensorboard) on tiny settings with a recorder around every write primitive of
:mod:`entangle.runs.io`, wherever a module imported it: the paths it saw are the write paths.
Then, for each path, the same command runs again from the same starting state with a
symlink planted there, pointing at a victim file (or folder) outside: the victim must stay as
it was and the command must end in one line, exit 2, naming the symlink.

Temporary names are random (``.NAME.<hex>.tmp``, ``.out.tmp-<hex>``): nothing can be planted
at them, and their exclusive creation is tested in tests/runs/test_io.py.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from entangle.cli.app import main
from entangle.runs import io as runio

# what each primitive writes: its argument that names the path, and a file or a folder there
PRIMITIVES = {
    "make_dir": (0, "dir"),
    "open_append": (0, "file"),
    "open_lock": (0, "file"),
    "truncate_file": (0, "file"),
    "remove_file": (0, "file"),
    "drop_torn_tail": (0, "file"),
    "atomic_write": (0, "file"),
    "atomic_json": (0, "file"),
    "atomic_text": (0, "file"),
    "publish_once": (0, "file"),
    "make_temp_dir": (0, "dir"),  # the folder the temporary folder is made in
    "remove_tree": (0, "dir"),
    "lock_folder": (0, "dir"),
    "remove_stale_temp_dirs": (0, "dir"),
    "replace_dir": (1, "dir"),  # (new, out): out is replaced
    "FileLock": (0, "file"),
}
RANDOM_NAME = re.compile(r"(\.tmp$|\.tmp-|tmp-[0-9a-f]{6,}|/\.[^/]+\.[0-9a-f]{8,})")


@functools.lru_cache(maxsize=1)
def _import_everything() -> None:
    """Import every entangle module now: one imported later would bind the unwrapped names."""
    import importlib
    import pkgutil

    import entangle

    for info in pkgutil.walk_packages(entangle.__path__, "entangle."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra (ray, torchjd, ...) that is not installed
            pass


def _recording(monkeypatch, seen: set):
    """Wrap each primitive in :mod:`entangle.runs.io` and in every module that imported it."""
    _import_everything()
    for name, (index, kind) in PRIMITIVES.items():
        original = getattr(runio, name)

        def wrapper(*args, __original=original, __index=index, __kind=kind, **kwargs):
            seen.add((str(Path(args[__index]).absolute()), __kind))
            return __original(*args, **kwargs)

        if isinstance(original, type):  # FileLock: record, then build the real one
            wrapper = functools.wraps(original, updated=())(wrapper)
        for module in [m for n, m in sys.modules.items() if n.startswith("entangle")]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, wrapper)


# ---------------------------------------------------------------- the commands, tiny


def _tiny_prepare(monkeypatch):
    """train's prepare on tiny settings: no pretraining, a small probe set (CLI has no flag)."""
    import entangle.gcd.train as recipe

    real = recipe.prepare

    def prepare(config, **kwargs):
        small = dataclasses.replace(config, pretrain_epochs=0, probeset_size=100, soc_k=4)
        return real(small, **kwargs)

    monkeypatch.setattr(recipe, "prepare", prepare)


TRAIN = ["train", "run", "--data", "synthetic", "--epochs", "1", "--batch-size", "128"]
TRAIN += ["--reference-epochs", "1", "--probe-every", "4", "--attribution", "0"]
TRAIN += ["--device", "cpu"]


def setup_train(work: Path, monkeypatch) -> list[str]:
    _tiny_prepare(monkeypatch)
    return TRAIN


def setup_resume(work: Path, monkeypatch) -> list[str]:
    """A run killed before its end: the finished tiny run without DONE."""
    _tiny_prepare(monkeypatch)
    shutil.copytree(_finished_run(), work / "run", symlinks=True)
    (work / "run" / "DONE").unlink()
    return TRAIN


@functools.lru_cache(maxsize=1)
def _finished_run() -> Path:
    import atexit
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="entangle-finished-"))
    atexit.register(shutil.rmtree, folder, True)  # shared by the resume's plantings
    mp = pytest.MonkeyPatch()
    try:
        _tiny_prepare(mp)
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            mp.setattr(sys, "argv", ["entangle", *TRAIN])
            with pytest.raises(SystemExit) as info:
                main()
            assert info.value.code == 0
        finally:
            os.chdir(cwd)
    finally:
        mp.undo()
    return folder / "run"


def setup_analyze(work: Path, monkeypatch) -> list[str]:
    from entangle.checkpoints import save_checkpoint
    from entangle.models.backbones import ResidualMLP
    from entangle.models.heads import GCDHead

    torch.manual_seed(0)
    head = GCDHead(16, 10, hidden_dim=32)
    save_checkpoint(work / "model.pt", ResidualMLP(in_dim=64, dim=16, depth=2), head)
    argv = ["analyze", "model.pt", "--out", "an", "--max-samples", "60", "--grad-batches", "1"]
    return [*argv, "--no-tsne", "--no-kmeans"]


def _fake_run(path: Path) -> Path:
    from tests.report.fake_runs import make_run

    return make_run(path, name="r", n_steps=6, n_per_class=6, feature_epochs=(1,))


def setup_report(work: Path, monkeypatch) -> list[str]:
    _fake_run(work / "src")
    return ["report", "src", "--out", "rep"]


def setup_export(work: Path, monkeypatch) -> list[str]:
    pytest.importorskip("tensorboard")
    _fake_run(work / "src")
    return ["export", "tensorboard", "src", "--out", "tb"]


def setup_import_log(work: Path, monkeypatch) -> list[str]:
    from tests.logs.log_samples import SIMGCD_MESSAGES, loguru

    (work / "log.txt").write_text(loguru(SIMGCD_MESSAGES) + "\n", encoding="utf-8")
    return ["import-log", "log.txt", "--out", "imp"]


GRID = """
[base]
data = "synthetic"
epochs = 1
batch_size = 128
pretrain_epochs = 0
reference_epochs = 1
probe_every = 4
probeset_every = 100
probeset_size = 100
soc_k = 4
device = "cpu"
save_features = false
[grid]
seed = [0]
"""


def setup_ablate(work: Path, monkeypatch) -> list[str]:
    (work / "grid.toml").write_text(GRID, encoding="utf-8")
    return ["ablate", "grid.toml", "--out", "grid", "--no-report"]


SCENARIOS = {
    "train": setup_train,
    "train-resume": setup_resume,
    "analyze": setup_analyze,
    "report": setup_report,
    "export-tensorboard": setup_export,
    "import-log": setup_import_log,
    "ablate": setup_ablate,
}


def _run(argv, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.err


# what the audit hook reports as a write: os.open / open with a writing mode, and the calls
# that create, rename or delete (docs.python.org audit events table)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"}
_audit = {"paths": None}


def _hook(event, args):
    paths = _audit["paths"]
    if paths is None:
        return
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        # a bare name is how a primitive opens a file through its folder's descriptor
        if writes and isinstance(path, str | os.PathLike) and os.sep in os.fspath(path):
            paths.add(os.path.abspath(os.fspath(path)))  # the cwd of the write
    elif event in _CHANGES and args and isinstance(args[0], str | os.PathLike):
        # (path, ..., dir_fd): a name relative to a folder descriptor is a primitive's
        dir_fd = args[-1] if event in ("os.mkdir", "os.remove", "os.rmdir") else -1
        if event == "os.rename":
            dir_fd = args[2]
        if dir_fd is None or dir_fd == -1:  # -1: no dir_fd given
            paths.add(os.path.abspath(os.fspath(args[0])))


sys.addaudithook(_hook)  # audit hooks cannot be removed: it records only inside _audited


def _write_paths(scenario, tmp_path, capsys) -> list[tuple[str, str]]:
    """The (relative path, kind) the scenario's command writes, from a recording run.

    An audit hook sees every write by path as well: each must be a path a primitive was
    given, or inside a fresh temporary folder (random name) one of them made; a primitive
    reaches its files through the folder's descriptor (a relative name, not checked here).
    """
    work = tmp_path / "record"
    work.mkdir()
    seen: set = set()
    audited: set = set()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        argv = SCENARIOS[scenario](work, mp)
        _recording(mp, seen)
        _audit["paths"] = audited
        try:
            code, err = _run(argv, capsys, mp)
        finally:
            _audit["paths"] = None
    assert code == 0, err
    primitive = {p for p, _ in seen}
    around = [
        rel
        for rel in sorted({os.path.relpath(p, work) for p in audited})
        # "." is the working folder itself (a mkdir -p of an output's existing parent)
        if rel != "."
        and not rel.startswith("..")
        and str(work / rel) not in primitive
        and not RANDOM_NAME.search("/" + rel)
    ]
    assert not around, f"{scenario} writes around entangle.runs.io: {around}"
    assert audited, "the audit hook saw no write"
    inside = []
    for path, kind in sorted(seen):
        rel = os.path.relpath(path, work)
        if rel == "." or rel.startswith("..") or RANDOM_NAME.search("/" + rel):
            continue  # outside the work folder (a cache elsewhere) or a random temp name
        inside.append((rel, kind))
    return sorted(set(inside))


def _victims(root: Path) -> tuple[Path, Path]:
    root.mkdir()
    (root / "victim.txt").write_text("precious\n")
    (root / "victim-dir").mkdir()
    (root / "victim-dir" / "keep.txt").write_text("precious\n")
    return root / "victim.txt", root / "victim-dir"


def _state(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


def _plant(path: Path, target: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_symlink_at_any_write_path_is_refused_and_its_target_kept(scenario, tmp_path, capsys):
    paths = _write_paths(scenario, tmp_path, capsys)
    assert paths, "the recorder saw no write"
    for i, (rel, kind) in enumerate(paths):
        victims = tmp_path / f"victims{i}"
        victim_file, victim_dir = _victims(victims)
        before = _state(victims)
        work = tmp_path / f"plant{i}"
        work.mkdir()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(work)
            argv = SCENARIOS[scenario](work, mp)
            _plant(work / rel, victim_dir if kind == "dir" else victim_file)
            code, err = _run(argv, capsys, mp)
        assert _state(victims) == before, f"{scenario}: a symlink at {rel} let {err!r} write"
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, f"{scenario}, symlink at {rel}: {code} {err}"
        # refused as a symlink, or (a fresh folder that already holds the planted entry, a
        # later write of the run) as a folder that is not entangle's to write in: either
        # way the line names what is in the way
        named = "symlink" in lines[0] or any(part in lines[0] for part in Path(rel).parts)
        assert named and "Traceback" not in err, lines[0]
