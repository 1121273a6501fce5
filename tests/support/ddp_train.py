"""Two-process `train` under DDP (gloo, CPU) for tests/gcd/test_train_ddp.py.

The worker runs in spawned children: rank r trains the tiny run below into a shared run
directory, once straight through and once killed inside epoch 1 and resumed. Test data and
scenario code only, no assertions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from entangle.gcd.train import TrainConfig, prepare, train

WORLD = 2

# EAGC with a reference, probe every step, ProbeSet and attribution: every part the loop runs
CONFIG = TrainConfig(
    data="synthetic",
    epochs=2,
    batch_size=96,
    pretrain_epochs=0,
    reference_epochs=1,
    eagc=True,
    probeset_every=2,
    probeset_size=64,
    attribution=2,
    soc_k=4,
    device="cpu",
    seed=3,
    save_features=False,
)


class Killed(Exception):
    """Raised by the kill callback on every rank at the same step."""


def kill_at(step: int):
    def on_step(done: int, total: int, loss) -> None:
        if done == step:
            raise Killed(step)

    return on_step


def steps_per_epoch(config: TrainConfig = CONFIG) -> int:
    """Steps one rank takes per epoch (the distributed weighted sampler's length)."""
    from entangle.data.datasets import train_sampler

    data = prepare(config).data
    return len(train_sampler(data, config.batch_size, rank=0, world_size=WORLD))


def worker(rank: int, init_file: str, root: str, kill_step: int) -> None:
    """Train ``CONFIG`` on rank ``rank``: into root/ddp, and killed + resumed into root/resumed."""
    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        train(CONFIG, Path(root) / "ddp")
        try:
            train(CONFIG, Path(root) / "resumed", on_step=kill_at(kill_step))
        except Killed:
            pass
        train(dataclasses.replace(CONFIG), Path(root) / "resumed")
        dist.barrier()  # gloo aborts a rank whose peer tears down first (no graceful close)
    finally:
        dist.destroy_process_group()
