"""The recipe's ranks: W DDP processes under torchrun, or W shards replayed in one process.

:class:`Ranks` says which ranks this process trains and the learning rate they share;
:class:`OtherRank` is a rank other than 0's read-only view of the run directory; :class:`Live`
holds the trained backbone and head as the one module DDP wraps; :func:`rank_reference` makes
the reference model the same on every rank (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from entangle.checkpoints import save_checkpoint as save_model_checkpoint
from entangle.errors import EntangleValueError
from entangle.gcd.config import TrainConfig
from entangle.gcd.setup import Setup, ensure_reference
from entangle.nn.distributed import barrier, broadcast_module, is_main_process, rank, world_size
from entangle.runs.directory import RunReader, RunWriter


@dataclasses.dataclass(frozen=True)
class Ranks:
    """Which ranks this process trains: its own under DDP, all ``shards`` in a replay."""

    count: int  # W: ranks the run has (processes, or shards replayed here)
    local: tuple[int, ...]  # the ranks whose batches this process computes
    distributed: bool  # torch.distributed runs W processes

    @classmethod
    def current(cls, config: TrainConfig, shards: int) -> Ranks:
        world = world_size()
        if int(shards) < 1 or (world > 1 and shards != 1):
            raise EntangleValueError(
                f"shards must be 1 under torchrun and >= 1 otherwise, got {shards} "
                f"(world size {world})"
            )
        if world > 1 and config.coordinator_config() is not None:
            # the torchjd coordinators set the gradients themselves, outside DDP's reducer
            raise EntangleValueError(
                "--coordinator with several processes is not supported by entangle train; "
                "train it on one device, or use --eagc / the baseline under torchrun"
            )
        if world > 1:
            return cls(world, (rank(),), True)
        return cls(int(shards), tuple(range(int(shards))), False)

    @property
    def main(self) -> bool:
        return is_main_process()

    def lr(self, config: TrainConfig, value: float | None = None) -> float:
        """train_mp.py's linear scaling rule for W > 1 ranks; the given lr on one.

        ``value``: the lr to scale (``config.lr`` when None; the head's ``lr_head`` scales
        by the same rule).
        """
        value = config.lr if value is None else value
        if self.count == 1:
            return value
        return value * config.batch_size * self.count / SIMGCD_LR_BATCH

    def meta(self, config: TrainConfig) -> dict:
        """run.json's ``distributed`` entry."""
        return {
            "world_size": self.count,
            "mode": "ddp" if self.distributed else "replayed in one process",
            "backend": torch.distributed.get_backend() if self.distributed else None,
            "batch_size_per_rank": config.batch_size,
            "global_batch_size": config.batch_size * self.count,
            "lr": self.lr(config),
            "lr_head": None if config.lr_head is None else self.lr(config, config.lr_head),
            "lr_rule": "lr * batch_size * world_size / 128 (SimGCD train_mp.py)",
        }


# SimGCD train_mp.py: lr=args.lr * (args.batch_size * dist.get_world_size() / 128)
SIMGCD_LR_BATCH = 128


class OtherRank:
    """A rank other than 0's view of the run: it reads rank 0's files and writes none.

    ``meta`` is rank 0's run.json on a resume (plus what this rank computed itself);
    checkpoint paths are rank 0's, which every rank loads from on a resume.
    """

    def __init__(self, run_dir: Path, resume: bool):
        self.path = Path(run_dir)
        self.meta = dict(RunReader(run_dir).meta) if resume else {}

    def write_meta(self, key: str, value) -> None:
        self.meta.setdefault(key, value)

    def checkpoint_path(self, name: str) -> Path:
        return RunWriter.checkpoint_path(self, name)  # type: ignore[arg-type]


class Live(torch.nn.Module):
    """The trained backbone and head as one module for DDP (whose reducer averages both).

    ``forward(views [2b, ...])`` returns ``(z [2b, D], z_ref [2b, D] or None)``; the head is
    applied by the loop after EAGC's coordination, outside the forward (DDP's hooks sit on the
    parameters, so its gradients are averaged too). The reference model is kept out of the
    module list: it is frozen and broadcast once.
    """

    def __init__(self, backbone, head, shared):
        super().__init__()
        self.backbone, self.head = backbone, head
        self._shared = (shared,)

    def forward(self, views):
        shared = self._shared[0]
        return shared(views) if shared is not None else (self.backbone(views), None)


def rank_reference(config: TrainConfig, setup: Setup, run, ranks: Ranks):
    """The reference model, trained (or loaded) by rank 0 and the same on every rank.

    Rank 0 saves it as the run's ``reference`` checkpoint; the other ranks wait, then load
    that file (training it again on each GPU would cost the time and differ in the last
    bits).
    """
    path = run.checkpoint_path("reference")
    if ranks.main:
        reference = ensure_reference(config, setup)
        if not path.exists():
            save_model_checkpoint(path, *reference, meta={"role": "reference"})
    barrier()
    if not ranks.main:
        loaded = (
            config
            if setup.reference is not None
            else dataclasses.replace(config, reference=str(path))
        )
        reference = ensure_reference(loaded, setup)
    if ranks.distributed:
        for module in reference:
            broadcast_module(module)
    return reference
