"""Tiny wrappers over torch.distributed so single-process code pays nothing."""

from __future__ import annotations

import torch


def world_size() -> int:
    """Number of processes in the default group, 1 when torch.distributed is not in use."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): the process that writes files."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes (``x`` itself when not distributed); never in place."""
    if world_size() == 1:
        return x
    out = x.clone()
    torch.distributed.all_reduce(out)
    return out
