"""One cell of a grid: where its run directory lives, training it, recording its failure.

The local workers (runner.py) and the Ray tasks (ray_launcher.py) both run
:func:`run_cell`; both record a cell that died with :func:`record_failure`.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from entangle.ablation.setups import cached_setup, file_lock
from entangle.gcd.train import TrainConfig, train
from entangle.runs.io import atomic_text, make_dir, remove_file

# the device a spawned worker was given (runner._worker_init sets it in the worker process)
WORKER = {"device": None}


def cells_dir(out) -> Path:
    """The folder of a grid folder ``out`` holding one run directory per cell."""
    return Path(out) / "cells"


def run_cell(job: dict) -> dict:
    """Train one cell (a worker's task; also used by the Ray launcher).

    Args:
        job: ``{"name", "config" (TrainConfig as dict), "run_dir", "setups_dir",
            "device" (None: the worker's or the config's)}``.

    Returns:
        ``{"name", "status", "error", "seconds", "device"}``; never raises for a failure
        inside the cell, which is recorded in ``run_dir/FAILED`` instead.
    """
    started = time.perf_counter()
    run_dir = Path(job["run_dir"])
    make_dir(run_dir)
    device = job.get("device") or WORKER["device"] or job["config"].get("device", "auto")
    result = {"name": job["name"], "status": "done", "error": None, "device": device}
    with file_lock(run_dir / ".lock"):
        if (run_dir / "DONE").exists():  # finished by a process that held the lock before us
            return result | {"status": "skipped", "seconds": 0.0}
        remove_file(run_dir / "FAILED")
        try:
            config = TrainConfig(**(job["config"] | {"device": device}))
            setup = cached_setup(config, job["setups_dir"])
            train(config, run_dir, setup, name=job["name"])
        except Exception as exc:  # a failed cell is recorded and the grid goes on
            result |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            record_failure(run_dir, result["error"], traceback.format_exc())
    return result | {"seconds": time.perf_counter() - started}


def record_failure(run_dir: Path, error: str, details: str = "") -> None:
    """Write ``run_dir/FAILED`` (JSON: error, traceback, time); the cell is retried next run."""
    record = {"error": error, "traceback": details, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_text(Path(run_dir) / "FAILED", json.dumps(record, indent=2) + "\n")
