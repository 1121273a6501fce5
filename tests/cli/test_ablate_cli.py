"""``entangle ablate``: dry run, exit codes, and a grid killed mid-way then completed."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from typer.testing import CliRunner

from entangle.ablation import example_path, load_grid
from entangle.cli.app import app
from entangle.errors import EntangleValueError
from entangle.runs.directory import RunReader

TINY_BASE = """
[base]
data = "synthetic"
batch_size = 128
pretrain_epochs = 0
reference_epochs = 1
probe_every = 2
probeset_every = 100
probeset_size = 100
soc_k = 4
device = "cpu"
save_features = false
"""


def _spec(tmp_path, grid: str, epochs: int = 1):
    path = tmp_path / "grid.toml"
    path.write_text(TINY_BASE + f"epochs = {epochs}\n" + grid, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def entangle_exe():
    exe = shutil.which("entangle")
    assert exe, "the entangle console script is not installed (pip install -e .)"
    return exe


def test_dry_run_prints_the_cells_and_trains_nothing(tmp_path):
    spec = _spec(tmp_path, '[grid]\nvariant = ["baseline", "eagc"]\nseed = [0, 1]\n')
    out = tmp_path / "g"
    result = CliRunner().invoke(
        app, ["ablate", str(spec), "--out", str(out), "--dry-run"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "4 cells" in result.output
    assert "variant=eagc__seed=1" in result.output and "variant=baseline__seed=0" in result.output
    assert not out.exists()


def test_example_grid_is_shipped_and_valid():
    spec = load_grid(example_path())
    variants = {c.config.variant() for c in spec.cells()}
    assert variants == {"baseline", "baseline-reference", "aga", "eep", "eagc", "eagc-fixed"}
    starts = {c.config.variant(): c.config.start_weights() for c in spec.cells()}
    assert starts["baseline"] == "pretrained"
    assert all(starts[v] == "reference" for v in variants - {"baseline"})
    for variant in variants:  # at least five seeds of every variant
        assert {c.config.seed for c in spec.cells() if c.config.variant() == variant} >= {
            0,
            1,
            2,
            3,
            4,
        }
    result = CliRunner().invoke(app, ["ablate", "--example", "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"{len(spec.cells())} cells" in result.output


def test_unknown_key_is_an_error_with_exit_code_2(tmp_path, entangle_exe):
    spec = _spec(tmp_path, "[grid]\nlamda = [0.1]\n")
    result = CliRunner().invoke(app, ["ablate", str(spec), "--dry-run"])
    assert isinstance(result.exception, EntangleValueError)
    done = subprocess.run(
        [entangle_exe, "ablate", str(spec), "--dry-run"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown setting 'lamda'" in done.stderr and "aga_weight" in done.stderr
    assert "Traceback" not in done.stderr


def test_failed_cell_gives_exit_code_1_and_the_rest_finishes(tmp_path):
    spec = _spec(tmp_path, '[grid]\ndata = ["synthetic", "nosuch"]\n')
    out = tmp_path / "g"
    result = CliRunner().invoke(
        app, ["ablate", str(spec), "--out", str(out), "--no-report"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.output
    assert "1 cell(s) failed" in result.output
    assert (out / "cells" / "data=synthetic" / "DONE").is_file()
    assert (out / "cells" / "data=nosuch" / "FAILED").is_file()
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and ",failed," in lines[2] and ",done," in lines[1]


def _wait_for_partial_grid(proc, cells_dir, total: int):
    """Poll until some cells are DONE and another has started; bounded (the grid is small)."""
    for _ in range(3000):  # at most ~5 min, far more than the grid needs
        if proc.poll() is not None:
            return False
        dirs = list(cells_dir.iterdir()) if cells_dir.is_dir() else []
        done = sum((d / "DONE").exists() for d in dirs)
        started = sum((d / "run.json").exists() and not (d / "DONE").exists() for d in dirs)
        if 0 < done < total and started:
            return True
        time.sleep(0.1)
    return False


def _state(cells_dir):
    """Per cell: its DONE text (None while unfinished), after any writer has let go."""
    state = {}
    for d in sorted(cells_dir.iterdir()):
        with open(d / ".lock", "a+b") as fh:  # blocks while a (dying) worker still holds it
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        done = d / "DONE"
        state[d.name] = done.read_text() if done.exists() else None
    return state


def test_killed_grid_resumes_without_duplicated_or_lost_cells(tmp_path, entangle_exe):
    spec = _spec(tmp_path, '[grid]\nvariant = ["baseline", "eagc"]\nseed = [0, 1]\n', epochs=2)
    out = tmp_path / "g"
    cells_dir = out / "cells"
    cmd = [entangle_exe, "ablate", str(spec), "--out", str(out), "--workers", "2", "--no-report"]
    # own session: the kill takes the whole process group (the grid and its workers), as a
    # scheduler pre-empting the job would
    log = tmp_path / "killed.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stderr, stderr=stderr, start_new_session=True)
        try:
            reached = _wait_for_partial_grid(proc, cells_dir, total=4)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert reached, log.read_text()
    before = _state(cells_dir)
    finished = {n for n, v in before.items() if v is not None}
    unfinished = {
        n for n, v in before.items() if v is None and (cells_dir / n / "run.json").exists()
    }
    assert 0 < len(finished) < 4
    assert not (out / "results.csv").exists()  # the killed invocation never got that far

    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    names = load_grid(spec).cells()
    assert sorted(d.name for d in cells_dir.iterdir()) == sorted(c.name for c in names)
    for cell in names:
        run_dir = cells_dir / cell.name
        reader = RunReader(run_dir)
        assert reader.complete and [e["epoch"] for e in reader.epochs] == [0, 1]
        per_epoch = reader.epochs[0]["step"]
        assert [s["step"] for s in reader.steps] == list(range(0, 2 * per_epoch, 2))
        meta = json.loads((run_dir / "run.json").read_text())
        if cell.name in finished:  # not trained again
            assert (run_dir / "DONE").read_text() == before[cell.name]
            assert "resumed_at" not in meta
        elif cell.name in unfinished:  # resumed where it stopped, not started anew
            assert len(meta["resumed_at"]) == 1
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and all(",done," in r for r in rows)
    assert sorted(r.split(",")[0] for r in rows) == sorted(c.name for c in names)
    assert f"skipped {sorted(finished)[0]}" in done.stdout


def test_final_tables_fit_80_columns_without_cutting_a_word():
    """At COLUMNS=80 the table used to end its columns in 'vari…', 'base…' (issue 22)."""
    import io

    from rich.console import Console

    from entangle.cli.ablate import results_tables

    spec = load_grid(example_path())
    rows = [
        {
            "status": "done",
            "variant": v,
            "aga_weight": 0.7,
            "seed": s,
            "acc_all": 0.61,
            "acc_old": 0.8123,
            "acc_new": 0.4567,
            "gdc": 0.123,
            "gdc_raw": 0.2,
            "soc": 0.45,
            "gdc_all": 0.1,
            "soc_all": 0.4,
        }
        for v in ("baseline-reference", "eagc-fixed")
        for s in (0, 1)
    ]
    buf = io.StringIO()
    console = Console(file=buf, width=80, color_system=None)
    for table in results_tables(rows, spec):
        console.print(table)
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert "baseline-reference" in text and "eagc-fixed" in text and "variant" in text
    assert "81.2 ± 0.0" in text and "0.123 ± 0.000" in text and "GDC raw 200" in text


def test_example_coordinators_dry_run_lists_the_six_by_five_grid(tmp_path):
    out = CliRunner().invoke(app, ["ablate", "--example-coordinators", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "coordinator=upgrad__seed=4" in out.output
    both = CliRunner().invoke(app, ["ablate", "--example", "--example-coordinators"])
    # the console script turns these EntangleValueErrors into one line and exit 2
    assert "give one of" in str(both.exception)
    bad = CliRunner().invoke(app, ["train", str(tmp_path / "r"), "--coordinator", "pcgrd"])
    assert "coordinator must be one of" in str(bad.exception)


def test_cell_progress_counts_only_the_cells_trained_now():
    """The bar's rate and ETA would count earlier runs' cells as done in no time."""
    from entangle.ablation.runner import CellOutcome
    from entangle.cli.ablate import CellProgress

    calls, lines = [], []

    def show(stage, done, total, note):
        calls.append((stage, done, total, note))

    show.print = lambda line, **kw: lines.append(line)
    view = CellProgress(show, 4)
    view.cell(CellOutcome("a", "skipped"), 1, 4)
    done = CellOutcome("b", "done")
    done.seconds = 12.0
    view.cell(done, 2, 4)
    assert calls == [
        ("cells", 0, 4, ""),
        ("cells", 0, 3, "1 done before"),
        ("cells", 1, 3, "1 done before"),
    ]
    assert "skipped[/] a" in lines[0] and lines[1].endswith("b 12 s")


def test_the_shipped_grids_are_named_by_the_command_not_the_install_path(tmp_path):
    from entangle.cli.ablate import grid_spec

    spec, name = grid_spec(None, True, False, None, None, None)
    assert (spec.source, name) == ("entangle ablate --example (digits.toml)", "example")
    spec, name = grid_spec(None, False, True, None, None, None)
    assert spec.source == "entangle ablate --example-coordinators (coordinators.toml)"
    given = tmp_path / "mine.toml"
    given.write_text(example_path().read_text(encoding="utf-8"), encoding="utf-8")
    spec, name = grid_spec(given, False, False, None, None, None)
    assert (spec.source, name) == (str(given), "mine")  # a user's spec keeps its path
