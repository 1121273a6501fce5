"""Running a grid: failures recorded while the others go on, resume, refused folders, devices."""

from __future__ import annotations

import json

import pytest

from entangle.ablation import parse_grid, run_grid
from entangle.errors import EntangleValueError
from tests.ablation.tiny import TINY


def test_failed_cell_is_recorded_and_the_others_go_on(tmp_path):
    spec = parse_grid(
        {"base": TINY, "grid": {"variant": ["baseline", "eagc"], "data": ["nosuch", "synthetic"]}}
    )
    run = run_grid(spec, tmp_path / "g", report=False)
    assert not run.ok
    status = {o.name: o.status for o in run.outcomes}
    bad = [n for n in status if "data=nosuch" in n]
    assert sorted(status[n] for n in bad) == ["failed", "failed"]
    assert all(status[n] == "done" for n in status if n not in bad)
    failed = json.loads((tmp_path / "g" / "cells" / bad[0] / "FAILED").read_text())
    assert "EntangleValueError" in failed["error"] and "nosuch" in failed["error"]
    rows = {r["cell"]: r for r in run.rows}
    assert rows[bad[0]]["status"] == "failed" and "nosuch" in rows[bad[0]]["error"]
    assert 0 <= rows["variant=eagc__data=synthetic"]["acc_all"] <= 1

    # a rerun skips the finished cells and retries the failed ones (which fail again)
    again = run_grid(spec, tmp_path / "g", report=False)
    assert {o.name: o.status for o in again.outcomes} == {
        n: ("failed" if n in bad else "skipped") for n in status
    }


def test_a_folder_with_other_settings_is_refused(tmp_path):
    spec = parse_grid({"base": TINY, "grid": {"seed": [0]}})
    assert run_grid(spec, tmp_path / "g", report=False).ok
    other = parse_grid({"base": TINY | {"lr": 0.05}, "grid": {"seed": [0]}})
    with pytest.raises(EntangleValueError, match="lr"):
        run_grid(other, tmp_path / "g", report=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(EntangleValueError, match="not empty"):
        run_grid(spec, tmp_path / "busy", report=False)


def test_devices_are_assigned_to_workers_in_turn():
    from entangle.ablation.runner import default_devices

    assert default_devices(3, ["cuda:0", "cuda:1"], "auto") == ["cuda:0", "cuda:1", "cuda:0"]
    assert default_devices(2, None, "cpu") == [None, None]  # each cell keeps its config device
