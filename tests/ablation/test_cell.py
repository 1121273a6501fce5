"""One cell: its run directory, a failure recorded in FAILED, a finished cell skipped."""

from __future__ import annotations

import json
from pathlib import Path

from entangle.ablation.cell import WORKER, cells_dir, record_failure, run_cell
from tests.ablation.tiny import TINY


def _job(tmp_path, device=None, **config) -> dict:
    return {
        "name": "c",
        "config": TINY | config,
        "run_dir": str(tmp_path / "cells" / "c"),
        "setups_dir": str(tmp_path / "setups"),
        "device": device,
    }


def test_cells_live_under_the_grid_folders_cells():
    assert cells_dir("grid") == Path("grid") / "cells"
    assert cells_dir(Path("/a/b")) == Path("/a/b/cells")


def test_record_failure_writes_the_error_and_its_traceback(tmp_path):
    record_failure(tmp_path, "ValueError: boom", "Traceback ...")
    record = json.loads((tmp_path / "FAILED").read_text(encoding="utf-8"))
    assert (record["error"], record["traceback"]) == ("ValueError: boom", "Traceback ...")
    assert record["time"][:2] == "20" and "T" in record["time"]
    record_failure(tmp_path, "KeyError: again")  # a second failure replaces the first
    assert json.loads((tmp_path / "FAILED").read_text())["error"] == "KeyError: again"


def test_a_failing_cell_is_recorded_not_raised(tmp_path):
    job = _job(tmp_path, data="nosuch")
    run_dir = Path(job["run_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "FAILED").write_text('{"error": "an older failure"}')
    result = run_cell(job)
    assert result["status"] == "failed" and result["name"] == "c"
    assert result["error"].startswith("EntangleValueError: unknown data source 'nosuch'")
    failed = json.loads((run_dir / "FAILED").read_text(encoding="utf-8"))
    assert failed["error"] == result["error"]
    assert "Traceback" in failed["traceback"] and "cached_setup" in failed["traceback"]
    assert not (run_dir / "DONE").exists()


def test_a_finished_cell_is_skipped_untouched(tmp_path):
    job = _job(tmp_path, data="nosuch")  # would fail if it ran
    run_dir = Path(job["run_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "DONE").write_text("{}")
    result = run_cell(job)
    assert (result["status"], result["seconds"], result["error"]) == ("skipped", 0.0, None)
    assert not (run_dir / "FAILED").exists()


def test_the_jobs_device_wins_over_the_workers_and_the_workers_over_the_configs(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(WORKER, "device", "worker-device")
    assert run_cell(_job(tmp_path, data="nosuch"))["device"] == "worker-device"
    assert run_cell(_job(tmp_path, device="cpu", data="nosuch"))["device"] == "cpu"
    monkeypatch.setitem(WORKER, "device", None)
    assert run_cell(_job(tmp_path, data="nosuch"))["device"] == TINY["device"]
