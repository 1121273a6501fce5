"""``entangle bench --report``: the time to build the demo's report, cold and from its cache,
and (without ``--demo-runs``) the demo itself end to end.

Cold = a new report folder (every t-SNE map, conceptor refit and figure computed); cached =
the same report built again into the same folder (everything read back from ``cache/``).
Rounds alternate the two in one process, so their ratio holds on a busy machine. Each time is
given twice: wall-clock seconds (this machine at this load, printed beside the 1-minute load
average) and CPU seconds (this process plus the t-SNE worker processes it waited for), which
a shared machine inflates far less; wall <= CPU / cores is what a quiet machine can reach.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from entangle.report import build_report
from entangle.report.tsne import available_cores


def demo_runs(folder: Path) -> list[Path]:
    """The run directories of a demo output folder (``FOLDER/runs/*``), sorted."""
    runs = sorted(p for p in (Path(folder) / "runs").iterdir() if (p / "run.json").is_file())
    return runs


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return float("nan")


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``fn()`` (CPU as :func:`_cpu`)."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def bench_report_build(
    runs: list[Path],
    *,
    rounds: int = 3,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Median seconds of a cold and a cached report of ``runs`` over ``rounds`` rounds.

    Returns:
        ``{"runs", "rounds", "cold_s", "cached_s", "cold_cpu_s", "cached_cpu_s",
        "cold_rounds_s", "cached_rounds_s", "cold_rounds_cpu_s", "cached_rounds_cpu_s",
        "cached_vs_cold", "load_before", "load_after", "cores"}`` (``*_s`` wall-clock,
        ``*_cpu_s`` CPU seconds, loads the 1-minute load average).
    """
    cold, cached, cold_cpu, cached_cpu = [], [], [], []
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="entangle-bench-report-") as tmp:
        for r in range(rounds):
            out = Path(tmp) / f"report{r}"
            for walls, cpus in ((cold, cold_cpu), (cached, cached_cpu)):
                wall, cpu = timed(lambda out=out: build_report(runs, out, workers=workers))
                walls.append(wall)
                cpus.append(cpu)
            if progress:
                progress(
                    f"report round {r + 1}/{rounds}: cold {cold[-1]:.1f} s "
                    f"({cold_cpu[-1]:.1f} s CPU), cached {cached[-1]:.1f} s "
                    f"({cached_cpu[-1]:.1f} s CPU), load {_load():.1f}"
                )
    cold_s, cached_s = statistics.median(cold), statistics.median(cached)
    return {
        "runs": len(runs),
        "rounds": rounds,
        "cold_s": cold_s,
        "cached_s": cached_s,
        "cold_cpu_s": statistics.median(cold_cpu),
        "cached_cpu_s": statistics.median(cached_cpu),
        "cold_rounds_s": cold,
        "cached_rounds_s": cached,
        "cold_rounds_cpu_s": cold_cpu,
        "cached_rounds_cpu_s": cached_cpu,
        "cached_vs_cold": cached_s / cold_s,
        "load_before": load_before,
        "load_after": _load(),
        "cores": available_cores(),
    }


def bench_demo(*, rounds: int = 3, demo_folder: Path | None = None, progress=None) -> dict:
    """Report build times of the demo's runs; with ``demo_folder`` None, first runs
    ``entangle demo`` itself (its runs and its report) and records how long that took, end
    to end (``demo_s``, ``demo_cpu_s``) and its runs alone (``demo_runs_s``)."""
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="entangle-bench-demo-") as tmp:
        if demo_folder is None:
            # lazy: the demo's training stack loads only when the demo is run here
            from entangle.report.demo import run_demo

            if progress:
                progress("running `entangle demo` (six runs and their report) to time it")
            result["demo_load_before"] = _load()
            demo: dict = {}
            wall, cpu = timed(lambda: demo.update(run_demo(out=Path(tmp) / "demo")))
            result.update(
                demo_s=wall,
                demo_cpu_s=cpu,
                demo_runs_s=demo["runs_seconds"],
                demo_load_after=_load(),
            )
            demo_folder = Path(tmp) / "demo"
        result.update(bench_report_build(demo_runs(demo_folder), rounds=rounds, progress=progress))
    return result
