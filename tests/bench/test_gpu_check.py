"""The GPU check's step runs (on the CPU here) and keeps the transfer budget; its time budget
on a planted clock: parts lighter or skipped with a note; the script's timeout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from entangle.bench import gpu_benchmark_run, gpu_check


@pytest.mark.parametrize(
    ("dtype", "scaler"), [(None, False), (torch.bfloat16, False), (torch.float16, True)]
)
def test_the_checked_step_makes_one_transfer_when_probed_and_none_otherwise(dtype, scaler):
    counts = gpu_check.probed_steps("cpu", dtype=dtype, scaler=scaler, strict=False)
    assert counts == {"non_probed_transfers": 0, "probed_transfers": 1}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_without_a_gpu_it_says_so_in_one_line(capsys):
    assert gpu_check.main(["--skip-tests", "--skip-bench"]) == 2
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("error: no CUDA device")


@pytest.mark.gpu
def test_the_checked_step_passes_under_sync_debug_mode_error():
    for dtype, scaler in ((torch.float16, True), (torch.bfloat16, False)):
        counts = gpu_check.probed_steps("cuda", dtype=dtype, scaler=scaler, strict=True)
        assert counts == {"non_probed_transfers": 0, "probed_transfers": 1}


def test_bench_modes_print_ratios_images_per_second_and_memory(monkeypatch):
    # run_bench / run_memory have their own tests; here planted results check what the GPU
    # check derives and prints (images/s = rows per step / step time, probe-set rows for SOC)
    import entangle.bench.memory as memory
    import entangle.bench.run as run

    bench = {
        "ratios": {"probe_every_step_vs_plain": 1.2, "mlp_probe_every_step_vs_plain": 1.3},
        "times_ms": {"plain": 40.0, "probeset_soc": 500.0, "mlp_plain": 2.0},
        "settings": {
            "model": "m",
            "batch_size": 8,
            "rounds": 3,
            "device": "cpu",
            "vit": {"rows_per_step": 16, "probe_set_size": 256},
            "mlp": {"rows_per_step": 32, "probe_set_size": 1024},
        },
    }
    mem = {
        "method": "planted",
        "settings": {"model": "m", "image_size": 32, "batch_size": 8, "steps": 2},
        "working_mb": {"plain": 100.0, "probe_attribution": 250.0},
        "vs_plain": {"plain": 1.0, "probe_attribution": 2.5},
    }
    seen = {}
    monkeypatch.setattr(run, "run_bench", lambda **kw: seen.update(kw) or bench)
    monkeypatch.setattr(memory, "run_memory", lambda **kw: mem)
    lines = []
    out = gpu_check.bench_modes("cpu", quick=True, say=lines.append)
    assert seen == {"device": "cpu", "repeats": 3, "quick": True}
    assert out["images_per_s"] == {"plain": 400.0, "probeset_soc": 512.0, "mlp_plain": 16000.0}
    assert out["peak_memory_gib"] is None  # CPU: no device peak
    text = "\n".join(lines)
    assert "probe_every_step_vs_plain" in text and "1.200" in text
    assert "probe_attribution" in text and "2.50x plain" in text


def test_output_file_is_named_and_written(tmp_path, monkeypatch, capsys):
    # the check past the CUDA test: fake a device, skip every part, read the file it names
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "fake GPU")
    monkeypatch.setattr(
        gpu_check,
        "probed_steps",
        lambda *a, **k: {"non_probed_transfers": 0, "probed_transfers": 1},
    )
    ran = []
    monkeypatch.setattr(gpu_benchmark_run, "benchmark_run", lambda device: ran.append(device) or {})
    out = tmp_path / "check.txt"
    assert gpu_check.main(["--skip-tests", "--skip-bench", "--out", str(out)]) == 0
    assert ran == ["cuda"]  # part 4 runs unless --skip-run
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"output: {out.resolve()}"
    assert printed.splitlines()[-1] == f"output written to {out.resolve()}"
    assert out.read_text() == printed


def test_a_symlinked_output_file_is_refused_and_its_target_kept(tmp_path, monkeypatch, capsys):
    # issue 19: --out was opened with open("w"), which truncated whatever the link pointed at
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "_checks", lambda args: print("checked") or 0)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "gpu_check.txt"
    out.symlink_to(victim)
    assert gpu_check.main(["--out", str(out)]) == 2
    assert victim.read_text() == "precious\n"
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("error: ") and str(out) in line and "symlink" in line


def test_the_output_file_replaces_an_earlier_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "_checks", lambda args: print("checked") or 0)
    out = tmp_path / "gpu_check.txt"
    out.write_text("an earlier, longer check's output\n" * 3)
    assert gpu_check.main(["--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out


def _fake_gpu_and_clock(monkeypatch) -> SimpleNamespace:
    """A CUDA device that is not there, and the check's clock planted (no timed assertions)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "fake GPU")
    clock = SimpleNamespace(now=500.0)
    monkeypatch.setattr(gpu_check, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    return clock


def _plant_parts(monkeypatch, clock, *, steps_s: float, bench_s: float = 0.0) -> list:
    """The parts after the tests, planted: each takes its seconds on the clock, calls logged."""
    calls = []

    def steps(*args, **kwargs):
        clock.now += steps_s / 2  # fp16, then bf16
        return {"non_probed_transfers": 0, "probed_transfers": 1}

    def bench(device, **kwargs):
        clock.now += bench_s
        calls.append(("bench", kwargs))

    monkeypatch.setattr(gpu_check, "probed_steps", steps)
    monkeypatch.setattr(gpu_check, "bench_modes", bench)
    monkeypatch.setattr(
        gpu_benchmark_run, "benchmark_run", lambda device, **kw: calls.append(("run", kw))
    )
    return calls


def test_parts_past_the_budget_are_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    clock = _fake_gpu_and_clock(monkeypatch)
    calls = _plant_parts(monkeypatch, clock, steps_s=300)  # the steps spend the whole budget
    assert gpu_check.main(["--skip-tests", "--out", str(tmp_path / "check.txt")]) == 0
    assert calls == []
    lines = capsys.readouterr().out.splitlines()
    for name, needs in (("the bench modes", 45), ("the benchmark-shaped run", 70)):
        assert f"skipped: 0 s of the 300 s budget left, and {name} needs about {needs} s" in lines
    assert lines[-2] == (
        "all GPU checks that ran passed (skipped, no time left in the budget: the bench "
        "modes, the benchmark-shaped run); 300 s used of the 300 s budget"
    )


def test_parts_run_lighter_where_the_full_settings_would_not_fit(tmp_path, monkeypatch, capsys):
    clock = _fake_gpu_and_clock(monkeypatch)
    calls = _plant_parts(monkeypatch, clock, steps_s=150, bench_s=45)
    out = tmp_path / "check.txt"
    assert gpu_check.main(["--skip-tests", "--out", str(out)]) == 0
    # 150 s left: 80 after the run's lighter 70, so the bench's 1 round; then 105 s for the run
    assert calls == [("bench", {"repeats": 1}), ("run", {"light": True})]
    printed = capsys.readouterr().out
    assert "150 s of the 300 s budget left; lighter settings: 1 timed bench round" in printed
    assert "105 s of the 300 s budget left; lighter settings: 10 steps of batch 40" in printed
    assert printed.splitlines()[-2] == "all GPU checks passed; 195 s used of the 300 s budget"


def test_full_settings_within_the_budget_and_the_budget_flag(tmp_path, monkeypatch, capsys):
    clock = _fake_gpu_and_clock(monkeypatch)
    calls = _plant_parts(monkeypatch, clock, steps_s=10, bench_s=80)
    argv = ["--skip-tests", "--budget-s", "600", "--out", str(tmp_path / "check.txt")]
    assert gpu_check.main(argv) == 0
    assert calls == [("bench", {"repeats": 3}), ("run", {})]  # run: the function's defaults
    assert capsys.readouterr().out.splitlines()[-2].endswith("90 s used of the 600 s budget")
    with pytest.raises(SystemExit):
        gpu_check.main(["--budget-s", "0"])
    assert "--budget-s must be > 0" in capsys.readouterr().err


def test_the_tests_get_the_time_left_as_their_timeout(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pytest")
    clock = _fake_gpu_and_clock(monkeypatch)
    _plant_parts(monkeypatch, clock, steps_s=10)
    timeouts = []

    def still_running(cmd, **kwargs):
        timeouts.append(kwargs["timeout"])
        clock.now += kwargs["timeout"]
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(gpu_check.subprocess, "run", still_running)
    argv = ["--skip-bench", "--skip-run", "--out", str(tmp_path / "check.txt")]
    assert gpu_check.main(argv) == 1
    assert timeouts == [280]  # 300 s less the 20 the steps keep back
    lines = capsys.readouterr().out.splitlines()
    assert "FAILED: the tests were still running after 280 s, stopped" in lines
    assert lines[-2] == "FAILED: gpu-marked tests (timed out); 290 s used of the 300 s budget"


@pytest.mark.parametrize(
    ("args", "limit"), [([], "360"), (["--budget-s", "120"], "180"), (["--budget-s=90.5"], "150")]
)
def test_the_script_times_out_a_minute_after_the_budget(tmp_path, args, limit):
    """scripts/gpu_check.sh with a planted `timeout` that prints what it was asked to run."""
    fake = tmp_path / "timeout"
    fake.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake.chmod(0o755)
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == [limit, "python", "-m", "entangle.bench.gpu_check", *args]
