"""bench --report's arithmetic: cold and cached builds alternate into one folder per round,
medians and their ratio from the planted times (no timed assertions)."""

from __future__ import annotations

import statistics

import pytest

import entangle.bench.report_time as report_time


def test_demo_runs_are_the_run_folders_sorted(tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    for name in ("b", "a"):
        (tmp_path / "runs" / name / "run.json").write_text("{}")
    (tmp_path / "runs" / "notes.txt").write_text("not a run")
    assert report_time.demo_runs(tmp_path) == [tmp_path / "runs" / n for n in ("a", "b")]


def test_timed_calls_once_and_gives_wall_and_cpu_seconds():
    calls = []
    wall, cpu = report_time.timed(lambda: calls.append(1))
    assert calls == [1] and wall >= 0 and cpu >= 0


def test_rounds_build_cold_then_cached_into_the_same_folder(tmp_path, monkeypatch):
    built, messages = [], []
    monkeypatch.setattr(
        report_time, "build_report", lambda runs, out, workers: built.append((runs, out, workers))
    )
    # planted (wall, cpu) per build: cold, cached, cold, cached, ...
    times = iter([(10.0, 8.0), (1.0, 0.5), (14.0, 9.0), (2.0, 0.7), (12.0, 7.0), (3.0, 0.6)])

    def planted(fn):
        fn()
        return next(times)

    monkeypatch.setattr(report_time, "timed", planted)
    runs = [tmp_path / "r1", tmp_path / "r2"]
    out = report_time.bench_report_build(runs, rounds=3, workers=2, progress=messages.append)
    folders = [o for _, o, _ in built]
    assert len(built) == 6 and all(r == runs and w == 2 for r, _, w in built)
    assert folders[0] == folders[1] != folders[2] == folders[3] != folders[4] == folders[5]
    assert out["cold_rounds_s"] == [10.0, 14.0, 12.0] and out["cached_rounds_s"] == [1, 2, 3]
    assert (out["cold_s"], out["cached_s"], out["cold_cpu_s"]) == (12.0, 2.0, 8.0)
    assert out["cached_cpu_s"] == statistics.median([0.5, 0.7, 0.6])
    assert out["cached_vs_cold"] == pytest.approx(2.0 / 12.0)
    assert (out["runs"], out["rounds"], out["cores"] >= 1) == (2, 3, True)
    assert len(messages) == 3 and messages[0].startswith("report round 1/3: cold 10.0 s")


def test_the_demo_folder_given_is_timed_without_running_the_demo(tmp_path, monkeypatch):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "run.json").write_text("{}")
    seen = []
    monkeypatch.setattr(
        report_time, "bench_report_build", lambda runs, **kw: seen.append((runs, kw)) or {"x": 1}
    )
    result = report_time.bench_demo(rounds=2, demo_folder=tmp_path)
    assert result == {"x": 1} and "demo_s" not in result
    assert seen == [([tmp_path / "runs" / "a"], {"rounds": 2, "progress": None})]
