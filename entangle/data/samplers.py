"""Index samplers for GCD training: a balanced one (a fixed labeled share per batch) and
SimGCD's weighted one; :func:`train_sampler` picks the recipe's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from entangle.data.gcd_data import GCDData
from entangle.errors import EntangleValueError


class BalancedBatchSampler:
    """Index batches with a fixed share of labeled rows (SimGCD's sampler: that share on average).

    Labeled and unlabeled indices are drawn from two pools, each cycled through in a fresh
    random order, so every sample is seen about once per pass over its pool and a batch never
    holds the same sample twice. An epoch is ``ceil(n / batch_size)`` full batches. Batches
    depend only on ``(seed, epoch)``: call ``set_epoch`` before iterating to resume exactly.
    How this differs from SimGCD's weighted sampler: docs/protocol.md.

    Args:
        labeled: ``[n]`` bool mask of labeled samples.
        batch_size: rows per batch (capped at n).
        labeled_share: share of each batch taken from the labeled pool (rounded); when a pool
            is too small the other pool fills the batch.
        seed: base seed.

    Yields:
        ``[batch_size]`` long tensors of sample indices (CPU).
    """

    def __init__(self, labeled, batch_size: int, *, labeled_share: float = 0.5, seed: int = 0):
        mask = torch.as_tensor(labeled).bool().cpu()
        if mask.ndim != 1 or mask.numel() == 0:
            raise EntangleValueError(
                f"BalancedBatchSampler: labeled must be a non-empty 1-D mask, got "
                f"{tuple(mask.shape)}"
            )
        if batch_size < 1:
            raise EntangleValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= labeled_share <= 1:
            raise EntangleValueError(f"labeled_share must be in [0, 1], got {labeled_share}")
        self.pools = (torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten())
        self.n = mask.numel()
        self.batch_size = min(int(batch_size), self.n)
        self.labeled_share = float(labeled_share)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def _counts(self) -> tuple[int, int]:
        b = self.batch_size
        n_lab, n_unl = (p.numel() for p in self.pools)
        want_lab = min(round(b * self.labeled_share), n_lab)
        take_unl = min(b - want_lab, n_unl)
        return b - take_unl, take_unl  # the labeled pool tops up a short unlabeled pool

    def __iter__(self) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        queues = [p[torch.randperm(p.numel(), generator=g)] for p in self.pools]
        counts = self._counts()
        for _ in range(len(self)):
            parts = []
            for j, (pool, need) in enumerate(zip(self.pools, counts, strict=True)):
                queue = queues[j]
                if queue.numel() < need:
                    # refill: the fresh order puts the samples still waiting last, so no batch
                    # takes the same sample twice
                    fresh = pool[torch.randperm(pool.numel(), generator=g)]
                    waiting = torch.isin(fresh, queue)
                    queue = torch.cat([queue, fresh[~waiting], fresh[waiting]])
                parts.append(queue[:need])
                queues[j] = queue[need:]
            yield torch.cat(parts)


class WeightedGCDSampler:
    """SimGCD's sampler as index batches: weighted draws with replacement, last batch dropped.

    Weight 1 per labeled sample and ``n_labeled / n_unlabeled`` per unlabeled one, so labeled
    and unlabeled samples are drawn equally often on average; ``n`` draws per epoch (SimGCD
    train.py: ``WeightedRandomSampler(sample_weights, num_samples=len(train_dataset))`` in a
    ``DataLoader(..., drop_last=True)``). With ``world_size > 1`` it is SimGCD's
    ``DistributedWeightedSampler`` (util/general_utils.py): rank ``r`` draws
    ``n // world_size`` samples among rows ``r, r + W, r + 2W, ...`` with their weights.
    Unlike SimGCD (numpy/torch global generator) the draws depend only on
    ``(seed, epoch, rank)``, so a resumed run sees the batches it would have seen.

    Args:
        labeled: ``[n]`` bool mask of labeled samples.
        batch_size: rows per batch (per rank).
        seed: base seed.
        rank, world_size: this process's place in a distributed run.

    Yields:
        ``[batch_size]`` long tensors of sample indices (CPU).
    """

    def __init__(
        self, labeled, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
    ):
        mask = torch.as_tensor(labeled).bool().cpu()
        n_lab = int(mask.sum())
        if mask.ndim != 1 or n_lab == 0 or n_lab == mask.numel():
            raise EntangleValueError(
                "WeightedGCDSampler needs a 1-D mask with labeled and unlabeled samples, got "
                f"{n_lab} labeled of {mask.numel()}"
            )
        if batch_size < 1 or not 0 <= rank < world_size:
            raise EntangleValueError(
                f"batch_size must be >= 1 and 0 <= rank < world_size, got {batch_size}, "
                f"{rank}, {world_size}"
            )
        weights = torch.where(mask, 1.0, n_lab / (mask.numel() - n_lab)).double()
        self.weights = weights[rank::world_size]
        self.num_samples = mask.numel() // world_size
        self.batch_size = int(batch_size)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        if len(self) == 0:
            raise EntangleValueError(
                f"batch size {batch_size} exceeds the {self.num_samples} samples a rank draws "
                "per epoch (drop_last leaves no batch); lower --batch-size"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1009 + self.rank)
        draw = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        rows = self.rank + draw * self.world_size
        for i in range(len(self)):
            yield rows[i * self.batch_size : (i + 1) * self.batch_size]


def train_sampler(
    data: GCDData, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
):
    """The recipe's batch sampler: SimGCD's weighted one for benchmarks, else the balanced one."""
    if data.benchmark is not None or world_size > 1:
        return WeightedGCDSampler(
            data.labeled, batch_size, seed=seed, rank=rank, world_size=world_size
        )
    return BalancedBatchSampler(data.labeled, batch_size, seed=seed)
