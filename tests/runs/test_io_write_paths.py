"""Every path entangle writes, enumerated from the code, refuses a planted symlink (issue 19).

One pass runs each command (train, a resumed train, analyze, report fresh and over an earlier
one, export tensorboard, import-log plain / --attach / --analyze, ablate without and with its
report and with a failing cell, demo fresh and --force, bench --scaling --out) on tiny settings
with a recorder around every write primitive of :mod:`entangle.runs.io`, wherever a module
imported it: the paths it saw are the write paths, and they must be the ones
docs/reliability.md lists (``python -m tests.support.write_paths`` prints them). Then, for
each path, the same command runs again from the same starting state with a symlink planted
there, pointing at a victim file (or folder) outside: the victim must stay as it was and the
command must end in one line, exit 2, naming the symlink.

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
# (.old-: mkdtemp's 8 random characters, the name replace_dir moves an old output to)
RANDOM_NAME = re.compile(
    r"(\.tmp$|\.tmp-|tmp-[0-9a-f]{6,}|/\.[^/]+\.[0-9a-f]{8,}|\.old-[a-z0-9_]{8}$)"
)


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


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet (``make_dir`` creates them)."""
    missing = []
    for parent in path.parents:
        if os.path.lexists(parent):
            break
        missing.append(parent)
    return missing


def _recording(monkeypatch, seen: set):
    """Wrap each primitive in :mod:`entangle.runs.io` and in every module that imported it."""
    _import_everything()
    for name, (index, kind) in PRIMITIVES.items():
        original = getattr(runio, name)

        def wrapper(*args, __original=original, __index=index, __kind=kind, __name=name, **kwargs):
            path = Path(args[__index]).absolute()
            seen.add((str(path), __kind))
            if __name == "make_dir" and kwargs.get("parents", True):
                seen.update((str(p), "dir") for p in _missing_parents(path))  # mkdir -p
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


def _finished_run() -> Path:
    return _finished("train") / "run"


@functools.cache
def _finished(scenario: str) -> Path:
    """The work folder of ``scenario`` run once to its end (shared by its plantings)."""
    import atexit
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"entangle-finished-{scenario}-"))
    atexit.register(shutil.rmtree, folder, True)
    mp = pytest.MonkeyPatch()
    try:
        mp.chdir(folder)
        argv = SCENARIOS[scenario](folder, mp)
        mp.setattr(sys, "argv", ["entangle", *argv])
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == EXIT_CODES.get(scenario, 0)
    finally:
        mp.undo()
    return folder


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


def setup_ablate_report(work: Path, monkeypatch) -> list[str]:
    """The grid with its report: report.html, verdict.json, results.csv, summary.md."""
    (work / "grid.toml").write_text(GRID, encoding="utf-8")
    return ["ablate", "grid.toml", "--out", "grid", "-q"]


def setup_ablate_failed(work: Path, monkeypatch) -> list[str]:
    """A grid whose one cell fails (unknown data, refused inside the cell): its FAILED file."""
    (work / "grid.toml").write_text(GRID.replace('"synthetic"', '"nosuch"'), encoding="utf-8")
    return ["ablate", "grid.toml", "--out", "grid", "-q"]


def _simgcd_folder(work: Path) -> Path:
    """A SimGCD-style run folder: log.txt and checkpoints/model.pt (a digits model)."""
    from tests.logs.log_samples import SIMGCD_LOG
    from tests.logs.test_attach import _digits_checkpoint

    folder = work / "exp"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "log.txt").write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    _digits_checkpoint(folder / "checkpoints" / "model.pt", epoch=1)
    return folder


def setup_import_log_attach(work: Path, monkeypatch) -> list[str]:
    from tests.logs.test_attach import make_analysis

    _simgcd_folder(work)
    make_analysis(work / "an" / "model", work / "exp" / "checkpoints" / "model.pt")
    return ["import-log", "exp", "--out", "imp", "--attach", "an/model"]


def setup_import_log_analyze(work: Path, monkeypatch) -> list[str]:
    """--analyze: analyze of the folder's model.pt into imp-analysis, attached to imp."""
    import entangle.analysis as analysis
    from tests.logs.test_attach import SMALL

    _simgcd_folder(work)
    real = analysis.analyze

    def small(ckpts, out, config, **kwargs):
        return real(ckpts, out, dataclasses.replace(config, **SMALL), **kwargs)

    monkeypatch.setattr(analysis, "analyze", small)
    return ["import-log", "exp", "--out", "imp", "--analyze", "digits"]


def _tiny_demo(monkeypatch) -> None:
    """The demo without pretraining, one reference epoch and a small probe set."""
    import entangle.report.demo as demo

    tiny = dataclasses.replace(
        demo.DEMO_CONFIG,
        pretrain_epochs=0,
        reference_epochs=1,
        probe_every=8,
        probeset_every=100,
        probeset_size=100,
        soc_k=4,
    )
    monkeypatch.setattr(demo, "DEMO_CONFIG", tiny)
    monkeypatch.setitem(demo.TSNE_SETTINGS, "max_points", 100)  # the report's t-SNE: small


DEMO = ["demo", "--out", "d", "--device", "cpu", "--epochs", "1", "--variants", "baseline"]


def setup_demo(work: Path, monkeypatch) -> list[str]:
    _tiny_demo(monkeypatch)
    return DEMO


def setup_demo_force(work: Path, monkeypatch) -> list[str]:
    """--force over an earlier demo: its runs/ are replaced."""
    _tiny_demo(monkeypatch)
    shutil.copytree(_finished("demo") / "d", work / "d", symlinks=True)
    return [*DEMO, "--force"]


_SCALING: dict = {}  # the one real timing's result


def setup_bench_scaling(work: Path, monkeypatch) -> list[str]:
    """--scaling --out: its figure and numbers; the timing (~40 s) runs once, then is reused."""
    from entangle.bench import scaling

    real = scaling.run_scaling

    def once(**kwargs):
        if "result" not in _SCALING:
            _SCALING["result"] = real(**kwargs)
        return _SCALING["result"]

    monkeypatch.setattr(scaling, "run_scaling", once)
    return ["bench", "--scaling", "--quick", "--rounds", "1", "--out", "sc"]


def setup_report_again(work: Path, monkeypatch) -> list[str]:
    """A report over an earlier one: its cache/ is read, the folder replaced."""
    _fake_run(work / "src")
    shutil.copytree(_finished("report") / "rep", work / "rep", symlinks=True)
    return ["report", "src", "--out", "rep"]


SCENARIOS = {
    "train": setup_train,
    "train-resume": setup_resume,
    "analyze": setup_analyze,
    "report": setup_report,
    "report-again": setup_report_again,
    "export-tensorboard": setup_export,
    "import-log": setup_import_log,
    "import-log-attach": setup_import_log_attach,
    "import-log-analyze": setup_import_log_analyze,
    "ablate": setup_ablate,
    "ablate-report": setup_ablate_report,
    "ablate-failed": setup_ablate_failed,
    "demo": setup_demo,
    "demo-force": setup_demo_force,
    "bench-scaling": setup_bench_scaling,
}
# the exit code of each scenario's own run (1: a cell failed, recorded in FAILED)
EXIT_CODES = {"ablate-failed": 1}


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
    assert code == EXIT_CODES.get(scenario, 0), err
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


DOCS = Path(__file__).parents[2] / "docs" / "reliability.md"
DOCS_SECTION = ("<!-- write-paths -->", "<!-- /write-paths -->")


def docs_line(scenario: str, paths: list[tuple[str, str]]) -> str:
    """The docs' entry for ``scenario``: its write paths, folders ending in ``/``."""
    names = [f"`{rel}/`" if kind == "dir" else f"`{rel}`" for rel, kind in paths]
    lines, line = [], f"- `{scenario}`:"
    for name in names:
        if len(line) + len(name) + 2 > 96:
            lines.append(line + ",")
            line = "  " + name
        else:
            line += (" " if line.endswith(":") else ", ") + name
    return "\n".join([*lines, line])


def documented() -> dict[str, list[str]]:
    """``{scenario: its write paths}`` as docs/reliability.md lists them."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(DOCS_SECTION[0])[1].split(DOCS_SECTION[1])[0]
    entries = {}
    for item in re.split(r"^- ", section, flags=re.M)[1:]:
        name, _, rest = item.partition(":")
        entries[name.strip("` ")] = re.findall(r"`([^`]+)`", rest)
    return entries


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


# a minute or more on a 2-core machine: a full run (training, analyze, a report) per path
SLOW = {"report-again", "import-log-analyze", "ablate-report", "demo", "demo-force"}
SLOW |= {"bench-scaling"}  # its one real timing (~40 s), reused by the plantings


# a run folder a slow command writes through RunWriter, as train does (planted in "train",
# "analyze" and "ablate"): recorded and listed in full, planted at the folder itself only
PLANTED_IN_ANOTHER = {
    "demo": "d/runs/baseline",
    "demo-force": "d/runs/baseline",
    "import-log-analyze": "imp-analysis/model",
    "ablate-report": "grid/cells/seed=0",
}

# an earlier output the command deletes as a whole (demo --force: the old runs/): a symlink
# planted inside it is removed with it, never followed, and the command goes on
REMOVED_WITH = {"demo-force": "d/runs"}


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCENARIOS],
)
def test_a_symlink_at_any_write_path_is_refused_and_its_target_kept(scenario, tmp_path, capsys):
    paths = _write_paths(scenario, tmp_path, capsys)
    assert paths, "the recorder saw no write"
    listed = [f"{rel}/" if kind == "dir" else rel for rel, kind in paths]
    assert listed == documented().get(scenario), (
        f"docs/reliability.md's write paths of {scenario} are not the recorded ones; "
        f"the entry is:\n{docs_line(scenario, paths)}"
    )
    below = PLANTED_IN_ANOTHER.get(scenario)
    if below:
        paths = [(rel, kind) for rel, kind in paths if not rel.startswith(below + "/")]
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
        if rel.startswith(REMOVED_WITH.get(scenario, "//") + "/"):
            assert code == EXIT_CODES.get(scenario, 0), f"{scenario}, symlink at {rel}: {err}"
            assert not (work / rel).is_symlink()
            continue
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, f"{scenario}, symlink at {rel}: {code} {err}"
        # refused as a symlink, or (a fresh folder that already holds the planted entry, a
        # later write of the run) as a folder that is not entangle's to write in: either
        # way the line names what is in the way
        named = "symlink" in lines[0] or any(part in lines[0] for part in Path(rel).parts)
        assert named and "Traceback" not in err, lines[0]


# ---------------------------------------------------------------- refused before the work


def test_demo_force_over_a_symlinked_runs_folder_is_refused_and_its_target_kept(
    tmp_path, capsys, monkeypatch
):
    # before: shutil.rmtree on the link, an OSError traceback (a write around entangle.runs.io)
    victim_file, victim_dir = _victims(tmp_path / "victims")
    before = _state(tmp_path / "victims")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "runs").symlink_to(victim_dir)
    monkeypatch.chdir(tmp_path)
    code, err = _run([*DEMO, "--force"], capsys, monkeypatch)
    assert _state(tmp_path / "victims") == before
    (line,) = err.strip().splitlines()
    assert code == 2 and "d/runs is a symlink" in line


def test_a_symlinked_run_directory_is_refused_before_pretraining(tmp_path, capsys, monkeypatch):
    # before: refused by RunWriter only after prepare (minutes of pretraining on real data)
    import entangle.gcd.train as recipe

    prepared = []
    monkeypatch.setattr(recipe, "prepare", lambda *a, **k: prepared.append(1))
    victim_file, victim_dir = _victims(tmp_path / "victims")
    (tmp_path / "run").symlink_to(victim_dir)
    monkeypatch.chdir(tmp_path)
    code, err = _run(TRAIN, capsys, monkeypatch)
    (line,) = err.strip().splitlines()
    assert code == 2 and "run is a symlink" in line and prepared == []
    assert sorted(p.name for p in victim_dir.iterdir()) == ["keep.txt"]


@pytest.mark.slow  # two reports
def test_an_earlier_report_full_of_symlinks_is_replaced_and_no_target_changes(
    tmp_path, capsys, monkeypatch
):
    """Every file of an earlier report, and its cache/ folder, a symlink to a victim: the new
    report reads no entry through them, replaces the folder, and removes the links unfollowed."""
    victim_file, victim_dir = _victims(tmp_path / "victims")
    (victim_dir / "tsne-planted.npz").write_bytes(b"precious\n")
    before = _state(tmp_path / "victims")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = setup_report_again(work, monkeypatch)
    planted = [p for p in sorted((work / "rep").rglob("*")) if p.is_file()]
    assert any(p.parent.name == "cache" for p in planted)  # the earlier report had a cache
    for path in planted:
        _plant(path, victim_file)
    _plant(work / "rep" / "cache", victim_dir)
    code, err = _run(argv, capsys, monkeypatch)
    assert code == 0, err
    assert _state(tmp_path / "victims") == before
    assert [p for p in (work / "rep").rglob("*") if p.is_symlink()] == []
    assert (work / "rep" / "cache").is_dir()
