"""A GCD problem's data: :class:`GCDSplit` (which classes are old, which of their samples are
labeled) and :class:`GCDData` (every training sample with its masks); built by
:func:`entangle.data.datasets.load_source`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from entangle.data.benchmarks import BenchmarkSplit
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
