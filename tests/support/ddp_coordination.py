"""A two-process DDP scenario (gloo, CPU, float64) for tests/test_coordination_ddp.py.

Each rank runs UPGrad through the Probe on its own shard for two steps; the parent
recomputes the all-reduced rows in one process. Scenario code only, no assertions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from entangle import Probe
from entangle.coordination import CoordinatorConfig, GradientCoordinator
from tests.support.ddp import WORLD, probe_groups, probe_model, probe_shard
from tests.support.toy import toy_losses

STEPS = 2
AGGREGATOR = "upgrad"


def worker(rank: int, init_file: str, out_dir: str) -> None:
    """Two coordinated DDP steps (one probed, one plain) on rank ``rank``; saves the grads."""
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = probe_model()
        ddp = DistributedDataParallel(model)
        params = list(model.parameters())
        coord = GradientCoordinator(params, CoordinatorConfig(AGGREGATOR))
        probe = Probe(probe_groups(model), every=2, coordinator=coord)
        grads, records = [], []
        for step in range(STEPS):  # the same weights each step: the parent needs no optimiser
            x, y, labeled, _ = probe_shard(rank, step)
            z = ddp(x)
            sup, unsup, _ = toy_losses(model.head, z, y, labeled)
            for p in params:
                p.grad = None
            records.append(probe.backward(sup, unsup, features=z, labeled=labeled))
            grads.append([p.grad.clone() for p in params])
        torch.save({"grads": grads, "records": records}, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # gloo aborts a rank whose peer tears down first (no graceful close)
    finally:
        dist.destroy_process_group()
