"""The t-SNE benchmark: its planted run (clustered features, 200 steps) and one report per
backend on it, the speedup sklearn / openTSNE from the planted clock (no timed assertions)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import entangle.bench.tsne as bench_tsne
from entangle.runs.directory import RunReader


def test_the_bench_run_is_a_finished_run_of_clustered_features(tmp_path):
    path = bench_tsne._bench_run(tmp_path / "run", n_rows=120, dim=6, seed=3, n_classes=4)
    reader = RunReader(path)
    assert reader.complete and len(reader.steps) == 200 and len(reader.epochs) == 1
    saved = reader.features(0)
    assert saved["features"].shape == (120, 6) and saved["logits"].shape == (120, 4)
    labels = saved["labels"]
    assert np.array_equal(saved["novel"], labels >= 2)
    assert not (saved["labeled"] & saved["novel"]).any()
    # rows of one class sit around one centre: within-class spread below between-class
    means = np.stack([saved["features"][labels == c].mean(0) for c in range(4)])
    within = np.mean([saved["features"][labels == c].std(0).mean() for c in range(4)])
    assert within < np.linalg.norm(means[0] - means[1])
    assert all(-1 <= s["raw"]["cos"] <= 1 for s in reader.steps)


def test_each_backend_builds_one_report_of_every_row(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_tsne, "_bench_run", lambda path, *a: calls.append(a) or path)

    def build(runs, out, **kw):
        calls.append((out.name, kw))
        clock.now += 4.0 if kw["tsne_backend"] == "opentsne" else 10.0

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(bench_tsne, "build_report", build)
    fake_time = SimpleNamespace(perf_counter=lambda: clock.now, process_time=lambda: clock.now)
    monkeypatch.setattr(bench_tsne, "time", fake_time)
    result = bench_tsne.bench_report(n_rows=50, dim=3, seed=7)
    assert calls[0] == (50, 3, 7)
    assert [c[0] for c in calls[1:]] == ["report-opentsne", "report-sklearn"]
    assert all(kw["tsne_max_points"] == 50 and kw["seed"] == 7 for _, kw in calls[1:])
    assert (result["opentsne_s"], result["sklearn_s"], result["sklearn_cpu_s"]) == (4, 10, 10)
    assert result["speedup"] == pytest.approx(2.5) and (result["n_rows"], result["dim"]) == (50, 3)
