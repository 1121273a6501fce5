"""Batches from a :class:`~entangle.data.gcd_data.GCDData`: two augmented training views,
evaluation inputs, and the loader-backed iterators of both (image data in worker processes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from entangle.data.augment import gcd_transform
from entangle.data.gcd_data import GCDData


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
