"""entangle.nn.distributed: identities without a process group; torchrun's environment read."""

from __future__ import annotations

import pytest
import torch

from entangle.nn import distributed as dist


def test_single_process_helpers_are_identities():
    assert not torch.distributed.is_initialized()
    assert (dist.world_size(), dist.rank(), dist.is_main_process()) == (1, 0, True)
    x = torch.arange(3.0)
    assert dist.global_sum(x) is x
    assert dist.global_max(7) == 7 and dist.global_max(True) == 1
    assert dist.gather_object({"a": 1}) == [{"a": 1}]
    box = object()
    assert dist.broadcast_object(box) is box
    model = torch.nn.Linear(2, 2)
    before = model.weight.detach().clone()
    assert dist.broadcast_module(model) is model
    assert torch.equal(model.weight, before)
    dist.barrier()


@pytest.mark.parametrize(
    "env, world, local",
    [({}, 1, 0), ({"WORLD_SIZE": "4", "LOCAL_RANK": "3"}, 4, 3), ({"WORLD_SIZE": "0"}, 1, 0)],
)
def test_launched_world_and_local_rank_read_torchrun_env(monkeypatch, env, world, local):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert (dist.launched_world(), dist.local_rank()) == (world, local)


def test_garbled_env_reads_as_not_launched(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("LOCAL_RANK", "x")
    assert (dist.launched_world(), dist.local_rank()) == (1, 0)


def test_init_from_env_without_a_launcher_joins_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init_from_env(use_cuda=False) is False
    assert not torch.distributed.is_initialized()
