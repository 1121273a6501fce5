"""The GCD benchmarks read from their published folder layouts, split as SimGCD splits them.

``cub``, ``scars``, ``aircraft`` (SSB splits), ``cifar10`` (5/5), ``cifar100`` (80/20),
``imagenet100`` (SimGCD's 100 classes, 50/50), ``imagenet1k`` (500/500) and ``herbarium19``
(its class-split pickle). Each reader follows the file the public code reads (CVMI-Lab/SimGCD
``data/*.py``, the same as sgvaze/generalized-category-discovery):

- the training set is the dataset's train split, in the file's order;
- the labeled set is drawn from the old-class training samples (in that order) exactly as
  ``subsample_instances`` draws it: ``np.random.seed(0)`` then ``np.random.choice(range(n),
  replace=False, size=int(prop * n))`` with ``prop_train_labels = 0.5``. The draw does not
  depend on the run's seed (SimGCD's does not either);
- the unlabeled set is every other training sample; accuracy is measured on it with the test
  transform (``unlabelled_train_examples_test``);
- targets are ``old classes, then new classes`` in the order of the class lists
  (``get_datasets``' ``target_transform_dict``), so old targets are ``0 .. n_old - 1``;
- the test split is read and listed, never trained on.

One reader per published layout lives in benchmark_layouts.py; docs/benchmarks.md shows
each. Nothing here needs torchvision: images are read with PIL when a batch asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from entangle.data.benchmark_layouts import (
    LAYOUTS,
    bad_layout,
    check_files,
    read_aircraft,
    read_cifar,
    read_cub,
    read_herbarium,
    read_imagenet,
    read_scars,
)
from entangle.data.images import ArrayImages, ImageFiles
from entangle.errors import EntangleValueError

__all__ = ["BENCHMARKS", "LAYOUTS", "BenchmarkSplit", "read_benchmark", "simgcd_labeled"]

# the benchmarks a source spec NAME:ROOT may name (the layouts in benchmark_layouts.py)
BENCHMARKS = (
    "cub",
    "scars",
    "aircraft",
    "cifar10",
    "cifar100",
    "imagenet100",
    "imagenet1k",
    "herbarium19",
)

# SimGCD train.py: prop_train_labels default 0.5 (every scripts/run_*.sh keeps it)
PROP_TRAIN_LABELS = 0.5


@dataclass
class BenchmarkSplit:
    """One benchmark's training set, its labeled subset, its classes and its test split.

    Attributes:
        dataset: benchmark name.
        image_dir: the folder ``train_items`` / ``test_items`` are relative to.
        class_names: name of every class, index = the codebase's class id.
        old_classes: class ids of the known classes, in target order.
        new_classes: class ids of the novel classes, in target order (after the old ones).
        train_items: ``[n]`` training images (paths relative to ``image_dir``; CIFAR:
            ``train/ROW``, the row of the concatenated training batches).
        train_labels: ``[n]`` class ids.
        labeled: ``[n]`` bool, the labeled subset.
        test_items, test_labels: the test split, same conventions.
        arrays: CIFAR only: ``(train [n, 32, 32, 3], test [m, 32, 32, 3])`` uint8.
    """

    dataset: str
    image_dir: Path
    class_names: list[str]
    old_classes: tuple[int, ...]
    new_classes: tuple[int, ...]
    train_items: list[str]
    train_labels: np.ndarray
    labeled: np.ndarray
    test_items: list[str]
    test_labels: np.ndarray
    arrays: tuple[np.ndarray, np.ndarray] | None = None

    def targets(self, labels) -> np.ndarray:
        """Class ids -> training targets (old classes first, SimGCD's target map)."""
        order = list(self.old_classes) + list(self.new_classes)
        lookup = np.full(len(self.class_names), -1, dtype=np.int64)
        lookup[order] = np.arange(len(order))
        return lookup[np.asarray(labels, dtype=np.int64)]

    def as_json(self) -> dict:
        """``{"dataset", "old_classes", "new_classes", "labeled", "unlabeled", "test"}``."""
        items = np.asarray(self.train_items, dtype=object)
        return {
            "dataset": self.dataset,
            "old_classes": [self.class_names[c] for c in self.old_classes],
            "new_classes": [self.class_names[c] for c in self.new_classes],
            "labeled": items[self.labeled].tolist(),
            "unlabeled": items[~self.labeled].tolist(),
            "test": list(self.test_items),
        }

    def counts(self) -> dict:
        """Images per part, and per class (by name) in each part."""
        parts = {
            "labeled": self.train_labels[self.labeled],
            "unlabeled": self.train_labels[~self.labeled],
            "test": self.test_labels,
        }
        k = len(self.class_names)
        per_class = {p: np.bincount(v, minlength=k) for p, v in parts.items()}
        return {
            "parts": {p: int(v.size) for p, v in parts.items()},
            "old_classes": len(self.old_classes),
            "new_classes": len(self.new_classes),
            "per_class": [
                {
                    "class": self.class_names[c],
                    "kind": "old" if c in set(self.old_classes) else "new",
                    **{p: int(per_class[p][c]) for p in parts},
                }
                for c in list(self.old_classes) + list(self.new_classes)
            ],
        }


def simgcd_labeled(train_labels, old_classes, prop: float = PROP_TRAIN_LABELS) -> np.ndarray:
    """``[n]`` bool: the labeled subset ``subsample_instances`` picks among old-class samples.

    Args:
        train_labels: ``[n]`` class ids of the training set, in the dataset's order.
        old_classes: the known class ids.
        prop: ``prop_train_labels``.
    """
    labels = np.asarray(train_labels)
    old_rows = np.flatnonzero(np.isin(labels, np.asarray(list(old_classes))))
    # SimGCD data/data_utils.py reseeds numpy's global generator with 0; a private RandomState
    # gives the same stream (legacy choice without replacement = permutation(n)[:size])
    draw = np.random.RandomState(0).choice(
        len(old_rows), size=int(prop * len(old_rows)), replace=False
    )
    mask = np.zeros(labels.shape[0], dtype=bool)
    mask[old_rows[draw]] = True
    return mask


def read_benchmark(name: str, root, *, prop: float = PROP_TRAIN_LABELS) -> BenchmarkSplit:
    """Read a benchmark from its folder layout and split it as SimGCD does.

    Args:
        name: one of ``BENCHMARKS``.
        root: the dataset's root folder (see ``LAYOUTS``).
        prop: ``prop_train_labels``, the share of old-class training samples labeled.

    Raises:
        EntangleValueError: unknown name, missing or malformed file (one line naming it and
            the layout expected).
    """
    name = str(name).lower()
    if name not in BENCHMARKS:
        raise EntangleValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    if not 0 < prop <= 1:
        raise EntangleValueError(f"prop_train_labels must be in (0, 1], got {prop}")
    root = Path(str(root)).expanduser()
    if not root.is_dir():
        raise bad_layout(name, "not a directory", root)
    arrays = None
    if name in ("cifar10", "cifar100"):
        image_dir, class_names, train, test, old, new, arrays = read_cifar(name, root)
    elif name in ("imagenet100", "imagenet1k"):
        image_dir, class_names, train, test, old, new = read_imagenet(name, root)
    elif name == "herbarium19":
        image_dir, class_names, train, test, old, new = read_herbarium(root)
    else:
        reader = {"cub": read_cub, "aircraft": read_aircraft, "scars": read_scars}[name]
        image_dir, class_names, train, test, old, new = reader(root)
    if arrays is None:
        check_files(name, image_dir, train[0] + test[0])
    train_labels = np.asarray(train[1], dtype=np.int64)
    test_labels = np.asarray(test[1], dtype=np.int64)
    for part, ys in (("train", train_labels), ("test", test_labels)):
        if ys.size == 0:
            raise bad_layout(name, f"no {part} images", image_dir)
        if ys.min() < 0 or ys.max() >= len(class_names):
            raise bad_layout(name, f"{part} class id {int(ys.max())} outside the class list", root)
    return BenchmarkSplit(
        dataset=name,
        image_dir=image_dir,
        class_names=list(class_names),
        old_classes=tuple(int(c) for c in old),
        new_classes=tuple(int(c) for c in new),
        train_items=list(train[0]),
        train_labels=train_labels,
        labeled=simgcd_labeled(train_labels, old, prop),
        test_items=list(test[0]),
        test_labels=test_labels,
        arrays=arrays,
    )


def benchmark_images(split: BenchmarkSplit, part: str = "train"):
    """The images of a part (``"train"`` or ``"test"``) as a PIL-image ``Dataset``."""
    if split.arrays is not None:
        return ArrayImages(split.arrays[0 if part == "train" else 1])
    items = split.train_items if part == "train" else split.test_items
    return ImageFiles([split.image_dir / p for p in items])


def benchmark_source(name: str, root, *, prop: float = PROP_TRAIN_LABELS):
    """``(split, x, targets)``: a benchmark's training images and targets for ``GCDData``."""
    split = read_benchmark(name, root, prop=prop)
    targets = torch.from_numpy(split.targets(split.train_labels))
    return split, benchmark_images(split, "train"), targets
