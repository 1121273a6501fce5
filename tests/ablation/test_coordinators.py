"""The coordinator axis of a grid, CI-sized: two cells (none, pcgrad), one epoch each."""

from __future__ import annotations

import pytest

from entangle.ablation import example_path, load_grid, parse_grid, run_grid
from entangle.runs.directory import RunReader
from tests.ablation.tiny import TINY

pytestmark = [pytest.mark.extras]
pytest.importorskip("torchjd")


def test_coordinator_grid_runs_and_its_table_reads_the_applied_update(tmp_path):
    spec = parse_grid({"base": TINY, "grid": {"coordinator": ["none", "pcgrad"], "seed": [0]}})
    run = run_grid(spec, tmp_path / "g", report=False)
    assert run.ok
    rows = {r["variant"]: r for r in run.rows}
    assert set(rows) == {"baseline", "pcgrad"}
    cells = {c.settings["coordinator"]: c for c in spec.cells()}
    steps = RunReader(tmp_path / "g" / "cells" / cells["pcgrad"].name).steps
    assert all("coordinated" in s and "raw" in s for s in steps)
    # the table's GDC is the applied (coordinated) update's, GDC raw the plain split's
    assert rows["pcgrad"]["gdc"] != rows["pcgrad"]["gdc_raw"]
    assert rows["baseline"]["gdc"] == rows["baseline"]["gdc_raw"]
    # both start from the pretrained weights: the first step's losses agree
    base = RunReader(tmp_path / "g" / "cells" / cells["none"].name).steps[0]
    assert steps[0]["losses"]["sup"] == pytest.approx(base["losses"]["sup"], rel=1e-6)
    # the verdict compares the coordinated run with the plain one, as it does EAGC's
    from entangle.report.load import load_runs
    from entangle.report.verdict import compute_verdict

    folders = [tmp_path / "g" / "cells" / cells[c].name for c in ("none", "pcgrad")]
    rows = compute_verdict(load_runs(folders)).rows
    quantities = {(name, quantity) for name, quantity, _ in rows}
    pcgrad = [q for n, q in quantities if "pcgrad" in n]
    assert any(q.startswith("GDC applied update - raw, same steps") for q in pcgrad)
    assert any(q.startswith("All accuracy, last epoch: minus ") for q in pcgrad)


def test_the_shipped_coordinator_example_is_the_six_by_five_grid():
    spec = load_grid(example_path("coordinators"))
    cells = spec.cells()
    assert len(cells) == 30
    names = {c.config.variant() for c in cells}
    assert names == {"baseline", "eagc", "pcgrad", "cagrad", "upgrad", "mgda"}
