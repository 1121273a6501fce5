"""One device resolver for train, analyze and bench: a CUDA index this machine lacks is refused."""

from __future__ import annotations

import pytest
import torch

from entangle.analysis.run import AnalyzeConfig, analyze
from entangle.errors import EntangleValueError
from entangle.nn.devices import resolve_device


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device, as torch reports it (no device is touched)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_is_cuda_when_present_else_cpu(monkeypatch, one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_an_index_the_machine_lacks_is_refused(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(EntangleValueError, match=r"cuda:7 asked for, but this machine has 1 CUDA"):
        resolve_device("cuda:7")


def test_cuda_without_a_gpu_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EntangleValueError, match="has 0 CUDA device"):
        resolve_device("cuda")
    with pytest.raises(EntangleValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_analyze_uses_it(one_gpu, tmp_path):
    """analyze's own resolver once checked only that CUDA exists: cuda:7 passed on one GPU."""
    with pytest.raises(EntangleValueError, match="this machine has 1 CUDA device"):
        analyze([], tmp_path / "out", AnalyzeConfig(device="cuda:7"))
    assert not (tmp_path / "out").exists()  # refused before anything is written
