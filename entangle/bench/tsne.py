"""Benchmark: a report of a run with many saved feature rows, openTSNE vs scikit-learn t-SNE.

Both backends run side by side in one process on the same run, so the ratio is meaningful
even on a busy machine; absolute seconds are only indicative.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from entangle.report.build import build_report
from entangle.runs.directory import RunWriter


def _bench_run(path: Path, n_rows: int, dim: int, seed: int, n_classes: int = 20) -> Path:
    """A finished run with one saved epoch of ``n_rows`` clustered features and 200 steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_rows)
    centers = rng.normal(0.0, 1.0, size=(n_classes, dim))
    features = (centers[labels] + rng.normal(0.0, 0.7, size=(n_rows, dim))).astype(np.float32)
    novel = labels >= n_classes // 2
    labeled = ~novel & (rng.random(n_rows) < 0.5)
    logits = rng.normal(size=(n_rows, n_classes)).astype(np.float32)
    with RunWriter(path, config={"data": "bench", "aperture": 2.0}, seed=seed, name="bench") as w:
        for step in range(200):
            cos = float(np.tanh(rng.normal(-0.1, 0.3)))
            w.write_step({"step": step, "raw": {"cos": cos, "gdc": 0.5 - cos / 2}})
        w.write_epoch({"epoch": 0, "acc_all": 0.5, "acc_old": 0.6, "acc_new": 0.4})
        w.save_features(
            0, features=features, labels=labels, labeled=labeled, novel=novel, logits=logits
        )
        w.finish()
    return path


def bench_report(n_rows: int = 20000, dim: int = 128, seed: int = 0) -> dict:
    """Time ``build_report`` on one run with ``n_rows`` feature rows, per t-SNE backend.

    Args:
        n_rows: saved feature rows (all of them go into the t-SNE map).
        dim: feature width.
        seed: data and t-SNE seed.

    Returns:
        dict: ``n_rows``, ``dim``, ``opentsne_s`` and ``sklearn_s`` (wall seconds of the whole
        report), ``opentsne_cpu_s`` / ``sklearn_cpu_s`` (CPU seconds of this process, all
        threads; steadier than wall time on a shared machine), ``speedup`` (sklearn /
        openTSNE, wall).
    """
    result: dict = {"n_rows": n_rows, "dim": dim}
    with tempfile.TemporaryDirectory(prefix="entangle-bench-") as tmp:
        run = _bench_run(Path(tmp) / "run", n_rows, dim, seed)
        for backend in ("opentsne", "sklearn"):
            start, cpu = time.perf_counter(), time.process_time()
            build_report(
                [run], Path(tmp) / f"report-{backend}", tsne_max_points=n_rows,
                tsne_backend=backend, seed=seed,
            )  # fmt: skip
            result[f"{backend}_s"] = time.perf_counter() - start
            result[f"{backend}_cpu_s"] = time.process_time() - cpu
    result["speedup"] = result["sklearn_s"] / result["opentsne_s"]
    return result
