"""``entangle bench --report``: the time to build the demo's report, cold and from its cache.

Cold = a new report folder (every t-SNE map, conceptor refit and figure computed); cached =
the same report built again into the same folder (everything read back from ``cache/``).
Rounds alternate the two in one process, so their ratio holds on a busy machine; the seconds
themselves are this machine's at this load.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from entangle.report import build_report


def demo_runs(folder: Path) -> list[Path]:
    """The run directories of a demo output folder (``FOLDER/runs/*``), sorted."""
    runs = sorted(p for p in (Path(folder) / "runs").iterdir() if (p / "run.json").is_file())
    return runs


def bench_report_build(
    runs: list[Path],
    *,
    rounds: int = 3,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Median seconds of a cold and a cached report of ``runs`` over ``rounds`` rounds.

    Returns:
        ``{"runs", "rounds", "cold_s", "cached_s", "cold_rounds_s", "cached_rounds_s",
        "cached_vs_cold"}``.
    """
    cold, cached = [], []
    with tempfile.TemporaryDirectory(prefix="entangle-bench-report-") as tmp:
        for r in range(rounds):
            out = Path(tmp) / f"report{r}"
            start = time.perf_counter()
            build_report(runs, out, workers=workers)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            build_report(runs, out, workers=workers)
            cached.append(time.perf_counter() - start)
            if progress:
                progress(
                    f"report round {r + 1}/{rounds}: cold {cold[-1]:.1f} s, "
                    f"cached {cached[-1]:.1f} s"
                )
    cold_s, cached_s = statistics.median(cold), statistics.median(cached)
    return {
        "runs": len(runs),
        "rounds": rounds,
        "cold_s": cold_s,
        "cached_s": cached_s,
        "cold_rounds_s": cold,
        "cached_rounds_s": cached,
        "cached_vs_cold": cached_s / cold_s,
    }


def bench_demo(*, rounds: int = 3, demo_folder: Path | None = None, progress=None) -> dict:
    """Report build times of the demo's runs; runs the demo (without report) when
    ``demo_folder`` is None and records how long that took."""
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="entangle-bench-demo-") as tmp:
        if demo_folder is None:
            # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
            # lazy: the demo's training stack loads only when the demo is run here
            from entangle.report.demo import run_demo

            if progress:
                progress("running the demo's six runs (no report) to time its report")
            start = time.perf_counter()
            run_demo(out=Path(tmp) / "demo", report=False)
            result["demo_runs_s"] = time.perf_counter() - start
            demo_folder = Path(tmp) / "demo"
        result.update(bench_report_build(demo_runs(demo_folder), rounds=rounds, progress=progress))
    return result
