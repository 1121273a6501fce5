"""Run a grid's cells: skip finished ones, resume unfinished ones, record failures, go on.

Grid folder::

    GRID/
      grid.json        the spec and the cell names of the last invocation
      cells/NAME/      one run directory per cell (DONE when finished, FAILED when it raised)
      setups/          shared starting weights per setup key (see setups.py)
      results.csv, summary.md, report.html

A cell runs under a lock on ``cells/NAME/.lock``, so a cell is never written by two
processes, even when an interrupted invocation's worker is still shutting down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from entangle.ablation.cell import WORKER, cells_dir, record_failure, run_cell
from entangle.ablation.report import write_results
from entangle.ablation.spec import Cell, GridSpec
from entangle.errors import EntangleValueError
from entangle.gcd.train import config_differences
from entangle.runs.io import atomic_text, make_dir

__all__ = ["CellOutcome", "GridRun", "cells_dir", "record_failure", "run_cell", "run_grid"]


@dataclass
class CellOutcome:
    """What happened to one cell in this invocation.

    Attributes:
        name: the cell's name.
        status: ``"done"`` (trained now), ``"skipped"`` (finished earlier) or ``"failed"``.
        error: ``"Type: message"`` of a failed cell.
        seconds: wall time of this invocation's attempt.
        device: where it ran.
    """

    name: str
    status: str
    error: str | None = None
    seconds: float = 0.0
    device: str | None = None


@dataclass
class GridRun:
    """Result of :func:`run_grid`: outcomes of this invocation and the files written."""

    out: Path
    outcomes: list[CellOutcome] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every cell of the grid has finished."""
        return not self.failed


def check_grid_folder(cells: Sequence[Cell], out: Path) -> None:
    """Refuse a folder whose existing cells were trained with other settings.

    A grid may be extended (new cells) and rerun, but a cell directory is only ever resumed
    with the settings it started with.
    """
    if out.exists() and not out.is_dir():
        raise EntangleValueError(f"--out {out} is a file; give a folder for the grid")
    if out.is_dir() and any(out.iterdir()) and not (out / "grid.json").exists():
        raise EntangleValueError(
            f"{out} is not empty and holds no grid (grid.json missing); choose a new folder"
        )
    for cell in cells:
        meta = cells_dir(out) / cell.name / "run.json"
        if not meta.is_file():
            continue
        try:
            stored = json.loads(meta.read_text(encoding="utf-8")).get("config") or {}
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise EntangleValueError(
                f"{meta} is damaged ({type(exc).__name__}); remove the folder {meta.parent} "
                "to run that cell again, or use another --out"
            ) from None
        diff = config_differences(stored, cell.config)
        if diff:
            raise EntangleValueError(
                f"{meta.parent} was started with other settings ({', '.join(diff)} differ) "
                "than the spec now gives it; use another --out, or remove that cell folder"
            )


def _worker_init(devices, threads: int | None, parent: int) -> None:
    WORKER["device"] = devices.get()
    if threads:
        import torch

        torch.set_num_threads(threads)
    # a worker outliving a killed grid would keep writing its cell; it notices that its
    # parent is gone (it is re-parented) and exits, releasing the cell's lock
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def default_devices(workers: int, devices: Sequence[str] | None, config_device: str) -> list:
    """One device per worker: ``devices`` cycled; by default each GPU of the machine in turn."""
    if devices:
        return [devices[i % len(devices)] for i in range(workers)]
    if config_device == "auto":
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            return [f"cuda:{i % count}" for i in range(workers)]
    return [None] * workers


def _cpu_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def run_local(
    jobs: list[dict], workers: int, devices: list, on_done: Callable[[dict], None]
) -> None:
    """Run jobs in this process (one worker) or in ``workers`` spawned processes."""
    if workers == 1:
        for job in jobs:
            on_done(run_cell(job | {"device": job.get("device") or devices[0]}))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # fork after torch threads start is unsafe
    queue = ctx.Queue()
    for device in devices:
        queue.put(device)
    init = (queue, _cpu_threads(workers), os.getpid())
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=init
    ) as ex:
        futures = {ex.submit(run_cell, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                on_done(future.result())
            except BrokenProcessPool:
                error = "a worker process died (killed or out of memory?); rerun to retry"
                record_failure(Path(job["run_dir"]), error)
                on_done({"name": job["name"], "status": "failed", "error": error})


def _jobs(cells: Sequence[Cell], out: Path, run: GridRun) -> list[dict]:
    """The :func:`run_cell` jobs of the unfinished cells; finished ones are noted as skipped."""
    todo = []
    for cell in cells:
        run_dir = cells_dir(out) / cell.name
        if (run_dir / "DONE").exists():
            run.outcomes.append(CellOutcome(cell.name, "skipped"))
            continue
        todo.append(
            {
                "name": cell.name,
                "config": dataclasses.asdict(cell.config),
                "run_dir": str(run_dir),
                "setups_dir": str(out / "setups"),
                "device": None,
            }
        )
    return todo


def run_grid(
    spec: GridSpec,
    out,
    *,
    workers: int = 1,
    devices: Sequence[str] | None = None,
    launcher: str = "local",
    address: str | None = None,
    gpus_per_cell: float = 0.0,
    cpus_per_cell: float = 1.0,
    report: bool = True,
    on_cell: Callable[[CellOutcome, int, int], None] | None = None,
) -> GridRun:
    """Run every unfinished cell of ``spec`` into ``out`` and write the results.

    Args:
        spec: the grid.
        out: the grid folder (created; an earlier run of the same grid is resumed).
        workers: local processes, one cell each at a time (``launcher="local"``).
        devices: devices assigned to the workers in turn, e.g. ``["cuda:0", "cuda:1"]``.
        launcher: ``"local"`` or ``"ray"`` (cells as Ray tasks; ``out`` must be on a file
            system every Ray node sees).
        address: Ray cluster address (``None``/``"auto"``: the running cluster, ``"local"``:
            start one here).
        gpus_per_cell, cpus_per_cell: resources each Ray task asks for.
        report: write ``report.html`` besides ``results.csv`` and ``summary.md``.
        on_cell: ``on_cell(outcome, finished, total)`` after each cell (progress display).

    Returns:
        :class:`GridRun`; ``ok`` is False when a cell failed (its error is in
        ``cells/NAME/FAILED`` and in ``results.csv``).
    """
    if workers < 1:
        raise EntangleValueError(f"workers must be >= 1, got {workers}")
    if launcher not in ("local", "ray"):
        raise EntangleValueError(f"launcher must be 'local' or 'ray', got {launcher!r}")
    out = Path(out).resolve()
    cells = spec.cells()
    check_grid_folder(cells, out)
    make_dir(out)
    make_dir(cells_dir(out), parents=False)
    grid = {"schema": 1, **spec.to_dict(), "cells": [c.name for c in cells]}
    atomic_text(out / "grid.json", json.dumps(grid, indent=2) + "\n")

    run = GridRun(out=out)
    todo = _jobs(cells, out, run)

    def done(result: dict) -> None:
        outcome = CellOutcome(**{k: result.get(k) for k in ("name", "status", "error", "device")})
        outcome.seconds = float(result.get("seconds") or 0.0)
        run.outcomes.append(outcome)
        if on_cell is not None:
            on_cell(outcome, len(run.outcomes), len(cells))

    if on_cell is not None:
        for i, outcome in enumerate(run.outcomes):
            on_cell(outcome, i + 1, len(cells))
    if todo and launcher == "ray":
        # lazy: Ray is an optional extra, imported only when asked for
        from entangle.ablation.ray_launcher import run_ray

        run_ray(
            todo,
            address=address,
            gpus_per_cell=gpus_per_cell,
            cpus_per_cell=cpus_per_cell,
            on_done=done,
        )
    elif todo:
        workers = min(workers, len(todo))
        base_device = cells[0].config.device
        run_local(todo, workers, default_devices(workers, devices, base_device), done)
    run.rows, run.files = write_results(spec, cells, out, report=report)
    return run
