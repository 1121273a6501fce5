"""Metrics on CUDA inputs stay on CUDA and agree with the CPU results (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from entangle.metrics import (
    conceptor,
    energy_ratio,
    free_energy,
    gradient_conflict,
    knn_overlap,
    principal_angles,
    rowwise_cosine,
    soc,
)

pytestmark = pytest.mark.gpu


def _both(fn, *args, **kwargs):
    """Run ``fn`` on CPU and on CUDA copies of the tensor arguments."""
    cpu = fn(*args, **kwargs)
    cuda_args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    return cpu, fn(*cuda_args, **kwargs)


def _check(cpu: torch.Tensor, gpu: torch.Tensor, atol: float = 1e-4) -> None:
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=atol, rtol=1e-4)


def test_tensor_metrics_stay_on_cuda_and_match_cpu():
    g = torch.Generator().manual_seed(0)
    s, u = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    cpu, gpu = _both(gradient_conflict, s, u)
    for key in cpu:
        _check(cpu[key], gpu[key])
    a, b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    _check(*_both(rowwise_cosine, a, b))
    _check(*_both(soc, a, b, k=4))
    _check(*_both(principal_angles, a, b, k=4), atol=1e-3)
    c_cpu, c_gpu = _both(conceptor, a, 2.0)
    _check(c_cpu, c_gpu)
    _check(energy_ratio(b, c_cpu), energy_ratio(b.cuda(), c_gpu))
    _check(*_both(free_energy, torch.randn(8, 5, generator=g)))
    novel = torch.arange(64) % 2 == 0
    assert knn_overlap(a.cuda(), novel.cuda(), k=5) == pytest.approx(knn_overlap(a, novel, k=5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda_computes_in_float32(dtype):
    x = torch.randn(32, 8, device="cuda", dtype=dtype)
    assert gradient_conflict(x[0], x[1])["cos"].dtype == torch.float32
    assert soc(x[:16], x[16:], k=4).dtype == torch.float32
    assert energy_ratio(x, conceptor(x, 2.0)).dtype == torch.float32
