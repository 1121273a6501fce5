"""The GPU check's step runs (on the CPU here) and keeps the transfer budget."""

from __future__ import annotations

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
