"""GCD data: the old/novel split, a balanced batch sampler and two-view batches.

A GCD training set holds every sample of every class. The *old* (known) classes contribute a
``labeled_fraction`` of their samples as the labeled set; the unlabeled set is the rest of the
old classes plus all samples of the *novel* classes. Accuracy is measured on the unlabeled set
(transductive, as in GCD).

The sources (``digits``, ``synthetic``, ``imagefolder:PATH``, ``cifar10:PATH``,
``cifar100:PATH``; none downloads anything) live in :mod:`entangle.data.sources`;
:func:`load_source` reads one and splits it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from entangle.data.augment import gcd_transform
from entangle.data.benchmarks import BENCHMARKS, BenchmarkSplit, benchmark_source

# re-exported (redundant aliases): these lived here before entangle.data.sources existed
from entangle.data.sources import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from entangle.data.sources import SOURCES as SOURCES
from entangle.data.sources import ArrayImages as ArrayImages
from entangle.data.sources import ImageFiles as ImageFiles
from entangle.data.sources import _parse_old_classes as _parse_old_classes
from entangle.data.sources import parse_old_classes, read_source
from entangle.defaults import LABELED_FRACTION
from entangle.errors import EntangleValueError


def _check_fraction(labeled_fraction: float) -> None:
    if not 0 < labeled_fraction <= 1:
        raise EntangleValueError(
            f"labeled fraction must be in (0, 1] (share of each old class that is labeled), "
            f"got {labeled_fraction}"
        )


@dataclass(frozen=True)
class GCDSplit:
    """Which classes are old and which of their samples are labeled.

    Args:
        old_classes: indices of the known classes; every other class is novel.
        labeled_fraction: share of each old class's samples that is labeled, in (0, 1].
            Per class ``max(1, round(fraction * count))`` samples, chosen at random.
        seed: fixes the choice of labeled samples.
    """

    old_classes: Sequence[int]
    labeled_fraction: float = LABELED_FRACTION
    seed: int = 0

    def __post_init__(self):
        _check_fraction(self.labeled_fraction)
        object.__setattr__(self, "old_classes", tuple(sorted({int(c) for c in self.old_classes})))

    def masks(self, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Labeled and novel masks for a label vector.

        Args:
            labels: ``[n]`` integer classes of every sample.

        Returns:
            ``(labeled, novel)``, both ``[n]`` bool on CPU: ``labeled`` marks the chosen
            old-class samples, ``novel`` marks samples whose true class is not old.
        """
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).cpu()
        old = torch.tensor(self.old_classes, dtype=torch.int64)
        novel = ~torch.isin(y, old)
        labeled = torch.zeros_like(novel)
        g = torch.Generator().manual_seed(int(self.seed))
        for c in self.old_classes:  # per class, so every old class keeps its share
            members = torch.nonzero(y == c).flatten()
            if members.numel() == 0:
                continue
            take = max(1, round(self.labeled_fraction * members.numel()))
            labeled[members[torch.randperm(members.numel(), generator=g)[:take]]] = True
        return labeled, novel

    def labeled_indices(self, labels) -> torch.Tensor:
        """``[n_labeled]`` long: indices of the labeled samples, ascending."""
        return torch.nonzero(self.masks(labels)[0]).flatten()

    def unlabeled_indices(self, labels) -> torch.Tensor:
        """``[n - n_labeled]`` long: the rest of the old classes and all novel samples."""
        return torch.nonzero(~self.masks(labels)[0]).flatten()


@dataclass
class GCDData:
    """All training samples of a GCD problem with their split.

    Attributes:
        x: ``[n, ...]`` tensor for in-memory sources (digits ``[n, 1, 8, 8]`` in [0, 1],
            synthetic ``[n, D]``), or a ``torch.utils.data.Dataset`` of PIL images for image
            sources (``len == n``, item ``i`` is image ``i``).
        labels: ``[n]`` int64 ground-truth classes (known for every sample, used for
            evaluation; the training losses read them only where ``labeled``).
        labeled: ``[n]`` bool, the labeled set.
        novel: ``[n]`` bool, true class is novel.
        old_classes: indices of the known classes.
        class_names: name of every class, index = class id.
        input_kind: ``"digits"``, ``"vector"`` or ``"image"`` (picks the augmentation).
        split: the ``GCDSplit`` that produced the masks (``None`` for a benchmark).
        benchmark: for ``cub:ROOT`` and the other benchmarks, the published split the masks
            come from (:mod:`entangle.data.benchmarks`); its targets put old classes first.
        image_size: side of the square crops image data is transformed to (train views and
            evaluation inputs; SimGCD's 224).
    """

    x: object
    labels: torch.Tensor
    labeled: torch.Tensor
    novel: torch.Tensor
    old_classes: list[int]
    class_names: list[str]
    input_kind: str
    split: GCDSplit | None = field(default=None, repr=False)
    benchmark: BenchmarkSplit | None = field(default=None, repr=False)
    image_size: int = 224

    @property
    def num_classes(self) -> int:
        """K, old plus novel classes."""
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        """True when ``x`` is a tensor (batches are built by tensor indexing)."""
        return isinstance(self.x, torch.Tensor)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_source(
    spec: str,
    *,
    old_classes=None,
    labeled_fraction: float = LABELED_FRACTION,
    seed: int = 0,
    **kw,
) -> GCDData:
    """Load a GCD data source and split it into labeled / unlabeled, old / novel.

    Args:
        spec: ``"digits"``, ``"synthetic"``, ``"imagefolder:PATH"`` or a benchmark
            ``"NAME:ROOT"`` (``cub``, ``cifar10``, ...: its published split, see
            :mod:`entangle.data.benchmarks`; ``old_classes`` must stay ``None`` and
            ``labeled_fraction`` is SimGCD's ``prop_train_labels``).
        old_classes: the known classes. ``None`` takes the source's default (digits 0-4,
            synthetic: its planted old classes, image folders: the first half, CIFAR-10 the
            first 5, CIFAR-100 the first 80). Otherwise a count (the first N classes, also as
            a digit string ``"5"``), a comma string of names or indices (``"cat,dog"``,
            ``"0,3,"``), a sequence of names/indices, or a path to a file with one class per
            line. Names are matched before indices.
        labeled_fraction: share of each old class that is labeled, in (0, 1].
        seed: fixes which samples are labeled.
        **kw: source options: for ``synthetic`` the arguments of
            ``entangle.data.synthetic.planted_features`` (``overlap``, ``dim``, ...; its
            ``seed`` defaults to ``seed``), for CIFAR extra torchvision dataset arguments.

    Returns:
        ``GCDData``.

    Raises:
        EntangleValueError: unknown source, missing class, a path without images, a labeled
            fraction outside (0, 1].
        EntangleError: an image source without torchvision installed (CIFAR).
    """
    _check_fraction(labeled_fraction)
    kind, _, root = str(spec).partition(":")
    if kind.strip().lower() in BENCHMARKS and root:
        return _load_benchmark(kind.strip().lower(), root, old_classes, labeled_fraction, kw)
    x, labels, names, default_old, input_kind = read_source(spec, seed=seed, **kw)
    old = parse_old_classes(old_classes, names, default_old)
    split = GCDSplit(old, labeled_fraction=labeled_fraction, seed=seed)
    labeled, novel = split.masks(labels)
    return GCDData(
        x=x,
        labels=labels,
        labeled=labeled,
        novel=novel,
        old_classes=list(split.old_classes),
        class_names=names,
        input_kind=input_kind,
        split=split,
    )


def _load_benchmark(name, root, old_classes, labeled_fraction, kw) -> GCDData:
    if old_classes is not None or kw:
        raise EntangleValueError(
            f"{name} uses its published class split (entangle splits {name}:ROOT shows it); "
            "drop --old-classes and source options, or use imagefolder:PATH for a custom split"
        )
    split, x, targets = benchmark_source(name, root, prop=labeled_fraction)
    n_old = len(split.old_classes)
    order = list(split.old_classes) + list(split.new_classes)
    return GCDData(
        x=x,
        labels=targets,
        labeled=torch.from_numpy(split.labeled),
        novel=targets >= n_old,
        old_classes=list(range(n_old)),
        class_names=[split.class_names[c] for c in order],
        input_kind="image",
        benchmark=split,
    )


# ---------------------------------------------------------------- sampling and batches


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


def make_batch(
    data: GCDData, indices, augment, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Two augmented views of the samples ``indices`` plus their labels and masks.

    Args:
        data: the ``GCDData``.
        indices: ``[b]`` sample indices (tensor or sequence).
        augment: for in-memory data a batched ``augment(x, generator)`` (``DigitAugment``,
            ``FeatureNoise``); for image data a per-image callable PIL -> tensor
            (``gcd_transform("train")``), run under a torch seed drawn from ``generator``.
        generator: a ``torch.Generator`` that fixes both views.

    Returns:
        dict with ``views`` ``[2b, ...]`` (view 1 rows, then view 2 rows, same order),
        ``labels`` ``[b]`` int64, ``labeled`` ``[b]`` bool, ``novel`` ``[b]`` bool,
        ``index`` ``[b]`` int64, all on the device of ``data.x`` (CPU for image data).
    """
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if not data.in_memory:
        return image_batch(data, idx, augment, batch_seed(generator))
    x = data.x[idx.to(data.x.device)]
    views = torch.cat([augment(x, generator), augment(x, generator)])
    return _batch_dict(data, idx, views)


def batch_seed(generator: torch.Generator) -> int:
    """The seed an image batch's views are drawn under (one draw from ``generator``)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def image_batch(data: GCDData, indices, augment, seed: int) -> dict[str, torch.Tensor]:
    """:func:`make_batch` of image data given its views' seed: what a loader worker runs.

    The views depend on ``(indices, seed)`` alone, so batches made in DataLoader workers are
    the ones the main process would make.
    """
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    # image pipelines draw from torch's global generator: seed it from ours, then restore
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        images = [data.x[int(i)] for i in idx]
        first = [augment(img) for img in images]
        second = [augment(img) for img in images]
    return _batch_dict(data, idx, torch.stack(first + second))


def _batch_dict(data: GCDData, idx: torch.Tensor, views: torch.Tensor) -> dict:
    device = views.device
    return {
        "views": views,
        "labels": data.labels[idx].to(device),
        "labeled": data.labeled[idx].to(device),
        "novel": data.novel[idx].to(device),
        "index": idx.to(device),
    }


def eval_inputs(data: GCDData, indices, transform=None) -> torch.Tensor:
    """Un-augmented inputs ``[b, ...]`` for evaluation and probe sets.

    In-memory data is returned as stored; image data goes through ``transform`` (default
    ``gcd_transform("test")`` at ``data.image_size``).
    """
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if data.in_memory:
        return data.x[idx.to(data.x.device)]
    if transform is None:
        transform = gcd_transform("test", image_size=data.image_size)
    return torch.stack([transform(data.x[int(i)]) for i in idx])


class _ImageBatches(torch.utils.data.Dataset):
    """Item ``i`` is batch ``i`` of a list of ``(rows, seed)`` jobs (for DataLoader workers)."""

    def __init__(self, data: GCDData, augment, jobs: list[tuple[torch.Tensor, int]]):
        self.data, self.augment, self.jobs = data, augment, jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> dict:
        rows, seed = self.jobs[i]
        return image_batch(self.data, rows, self.augment, seed)


def epoch_batches(
    data: GCDData,
    rows: Sequence,
    augment,
    generator: torch.Generator,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """An epoch's :func:`make_batch` batches for the row batches ``rows``, in order.

    Image data with ``workers > 0`` is decoded and augmented in a DataLoader with that many
    worker processes (``pin_memory`` for CUDA); every batch's seed is drawn here first, in
    order, so the batches equal those of ``workers=0``. In-memory data is batched here (its
    augmentation is one tensor op per batch, a worker would only add copies).

    Args:
        rows: the epoch's ``[b]`` index tensors (e.g. ``list(sampler)``).
        generator: fixes the views, as in :func:`make_batch`.
    """
    if data.in_memory or workers <= 0:
        for r in rows:
            yield make_batch(data, r, augment, generator)
        return
    jobs = [(torch.as_tensor(r, dtype=torch.int64), batch_seed(generator)) for r in rows]
    loader = torch.utils.data.DataLoader(
        _ImageBatches(data, augment, jobs),
        batch_size=None,  # items are whole batches
        num_workers=int(workers),
        pin_memory=pin_memory,
        prefetch_factor=2,
    )
    yield from loader


class _EvalBatches(torch.utils.data.Dataset):
    """Item ``i`` is rows ``[i b, (i + 1) b)`` through :func:`eval_inputs` (loader workers)."""

    def __init__(self, data: GCDData, batch_size: int, transform):
        self.data, self.batch_size, self.transform = data, int(batch_size), transform

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.batch_size
        rows = torch.arange(start, min(start + self.batch_size, len(self.data)))
        return eval_inputs(self.data, rows, self.transform)


def eval_batches(
    data: GCDData,
    batch_size: int,
    transform=None,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """Every sample's :func:`eval_inputs` in order, ``batch_size`` rows at a time.

    Image data with ``workers > 0`` is decoded in that many DataLoader workers (the test
    transform has no randomness: the batches equal ``workers=0``'s). Yields ``[b, ...]``.
    """
    n = len(data)
    if data.in_memory or workers <= 0:
        for start in range(0, n, batch_size):
            yield eval_inputs(data, torch.arange(start, min(start + batch_size, n)), transform)
        return
    loader = torch.utils.data.DataLoader(
        _EvalBatches(data, batch_size, transform),
        batch_size=None,
        num_workers=int(workers),
        pin_memory=pin_memory,
    )
    yield from loader


def default_workers(cpus: int | None = None) -> int:
    """``--workers auto``: half the cores up to 8 (SimGCD's num_workers), none on <4 cores.

    On 2-3 cores the main process would compete with its workers for the same cores.
    """
    import os

    cpus = os.cpu_count() if cpus is None else cpus
    return 0 if not cpus or cpus < 4 else min(8, cpus // 2)
