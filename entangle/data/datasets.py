"""GCD data: load a source and split it into old/novel, labeled/unlabeled.

A GCD training set holds every sample of every class. The *old* (known) classes contribute a
``labeled_fraction`` of their samples as the labeled set; the unlabeled set is the rest of the
old classes plus all samples of the *novel* classes. Accuracy is measured on the unlabeled set
(transductive, as in GCD).

The sources (``digits``, ``synthetic``, ``imagefolder:PATH``, ``cifar10:PATH``,
``cifar100:PATH``; none downloads anything) live in :mod:`entangle.data.sources`;
:func:`load_source` reads one and splits it into a :class:`~entangle.data.gcd_data.GCDData`.
The samplers are in :mod:`entangle.data.samplers`, the batches in :mod:`entangle.data.batches`.
"""

from __future__ import annotations

import torch

# the ``X as X`` imports are re-exports: the sources, the split, the samplers and the batches
# lived here before they had their own modules, and callers and tests still import them from here
from entangle.data.batches import default_workers as default_workers
from entangle.data.batches import epoch_batches as epoch_batches
from entangle.data.batches import eval_batches as eval_batches
from entangle.data.batches import eval_inputs as eval_inputs
from entangle.data.batches import image_batch as image_batch
from entangle.data.batches import make_batch as make_batch
from entangle.data.benchmarks import BENCHMARKS, benchmark_source
from entangle.data.gcd_data import GCDData as GCDData
from entangle.data.gcd_data import GCDSplit as GCDSplit
from entangle.data.gcd_data import _check_fraction
from entangle.data.samplers import BalancedBatchSampler as BalancedBatchSampler
from entangle.data.samplers import WeightedGCDSampler as WeightedGCDSampler
from entangle.data.samplers import train_sampler as train_sampler
from entangle.data.sources import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from entangle.data.sources import SOURCES as SOURCES
from entangle.data.sources import ArrayImages as ArrayImages
from entangle.data.sources import ImageFiles as ImageFiles
from entangle.data.sources import _parse_old_classes as _parse_old_classes
from entangle.data.sources import parse_old_classes, read_source
from entangle.defaults import LABELED_FRACTION
from entangle.errors import EntangleValueError


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
