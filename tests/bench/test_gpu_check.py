"""The GPU check's step runs (on the CPU here) and keeps the transfer budget."""

from __future__ import annotations

import pytest
import torch

from entangle.bench import gpu_check


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
