"""Tiny wrappers over torch.distributed so single-process code pays nothing.

A run started by ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the environment)
joins its process group with :func:`init_from_env`; every helper below is the identity (or a
no-op) when torch.distributed is not initialised. How ``entangle train`` uses them:
docs/distributed.md.
"""

from __future__ import annotations

import datetime
import os

import torch

# a rank waits this long in a collective: rank 0 evaluates and writes alone while the others
# wait at the epoch's barrier, which on ImageNet-scale unlabeled sets takes minutes
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


def _initialised() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group, 1 when torch.distributed is not in use."""
    return torch.distributed.get_world_size() if _initialised() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return torch.distributed.get_rank() if _initialised() else 0


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): the process that writes files."""
    return rank() == 0


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes (``x`` itself when not distributed); never in place."""
    if world_size() == 1:
        return x
    out = x.clone()
    torch.distributed.all_reduce(out)
    return out


def global_max(value: int, device: torch.device | str = "cpu") -> int:
    """The largest ``value`` any process holds (``value`` when not distributed)."""
    if world_size() == 1:
        return int(value)
    t = torch.tensor(int(value), dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def gather_object(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order (``[obj]`` when not distributed)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process (nothing when not distributed)."""
    if world_size() > 1:
        torch.distributed.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every process (picklable objects; ``obj`` when single)."""
    if world_size() == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_module(module: torch.nn.Module, src: int = 0) -> torch.nn.Module:
    """Overwrite ``module``'s parameters and buffers with rank ``src``'s, in place.

    For modules outside DistributedDataParallel (a frozen reference model): GPU kernels are
    not bit-deterministic, so two ranks that trained the same model may hold different ones.
    """
    if world_size() > 1:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(t.data, src=src)
    return module


def launched_world() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not started by a launcher)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def local_rank() -> int:
    """``LOCAL_RANK`` as torchrun sets it: which GPU of this machine the process uses."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def init_from_env(use_cuda: bool) -> bool:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU); False when not launched.

    Reads ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE`` (torchrun's env://
    rendezvous). With CUDA the process's current device becomes ``cuda:LOCAL_RANK``.
    """
    if launched_world() == 1 or _initialised():
        return _initialised()
    if use_cuda:
        torch.cuda.set_device(local_rank())
    torch.distributed.init_process_group(
        "nccl" if use_cuda else "gloo", init_method="env://", timeout=COLLECTIVE_TIMEOUT
    )
    return True
