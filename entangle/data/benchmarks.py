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

docs/benchmarks.md shows each layout. Nothing here needs torchvision: images are read with PIL
when a batch asks for them.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from entangle.data import class_splits as cs
from entangle.data.sources import BENCHMARKS, ArrayImages, ImageFiles
from entangle.errors import EntangleValueError

# SimGCD train.py: prop_train_labels default 0.5 (every scripts/run_*.sh keeps it)
PROP_TRAIN_LABELS = 0.5
# torchvision.datasets.folder.IMG_EXTENSIONS, which ImageFolder (ImageNet, Herbarium19) uses
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

LAYOUTS = {
    "cub": "ROOT/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, images/}",
    "aircraft": "ROOT/data/{images_variant_trainval.txt, images_variant_test.txt, images/ID.jpg}",
    "scars": "ROOT/devkit/{cars_train_annos.mat, cars_test_annos_withlabels.mat}, "
    "ROOT/cars_train/, ROOT/cars_test/",
    "cifar10": "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    "cifar100": "ROOT/cifar-100-python/{train, test, meta}",
    "imagenet100": "ROOT/train/<1000 wnid folders>/*.JPEG and ROOT/val/<wnid>/*.JPEG",
    "imagenet1k": "ROOT/train/<1000 wnid folders>/*.JPEG and ROOT/val/<wnid>/*.JPEG",
    "herbarium19": "ROOT/small-train/<class folders>/ and ROOT/small-validation/<class folders>/",
}


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


# ---------------------------------------------------------------- layout readers


def _bad(name: str, what: str, path: Path | str) -> EntangleValueError:
    return EntangleValueError(
        f"{name}: {what}: {path}; expected layout {LAYOUTS[name]} (point {name}:ROOT at its root)"
    )


def _need(name: str, path: Path) -> Path:
    if not path.exists():
        raise _bad(name, "missing", path)
    return path


def _columns(name: str, path: Path, ncol: int) -> list[list[str]]:
    """Whitespace-separated rows of a metadata file, each with ``ncol`` fields."""
    try:
        lines = _need(name, path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(name, f"not readable text ({type(exc).__name__})", path) from None
    rows = [ln.split(" ", ncol - 1) for ln in lines if ln.strip()]
    for i, row in enumerate(rows):
        if len(row) != ncol:
            raise _bad(name, f"line {i + 1} does not have {ncol} space-separated fields", path)
    return rows


def _int(name: str, text: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(name, f"{text[:40]!r} is not an integer", path) from None


def _check_files(name: str, image_dir: Path, items) -> None:
    # SimGCD's CUB reader checks every file (_check_integrity); do the same for every layout
    for item in items:
        if not (image_dir / item).is_file():
            raise _bad(name, "image listed but missing", image_dir / item)


def _cub(root: Path):
    base = root / "CUB_200_2011"
    images = {r[0]: r[1] for r in _columns("cub", base / "images.txt", 2)}
    labels = {r[0]: r[1] for r in _columns("cub", base / "image_class_labels.txt", 2)}
    train = {r[0]: r[1] for r in _columns("cub", base / "train_test_split.txt", 2)}
    image_dir = base / "images"
    parts = {"1": ([], []), "0": ([], [])}
    for img_id, path in images.items():  # images.txt order, as pandas' merge keeps it
        if img_id not in labels or img_id not in train or train[img_id] not in parts:
            raise _bad("cub", f"image id {img_id} lacks a class or a 0/1 split", base)
        items, ys = parts[train[img_id]]
        items.append(path)
        ys.append(_int("cub", labels[img_id], base / "image_class_labels.txt") - 1)
    names = {}
    for path, y in zip(*parts["1"], strict=True):
        names.setdefault(y, Path(path).parent.name)
    class_names = [names.get(c, f"class {c + 1}") for c in range(200)]
    return image_dir, class_names, parts["1"], parts["0"], cs.CUB_KNOWN, _ssb("CUB")


def _ssb(prefix: str) -> tuple[int, ...]:
    # unknown = Hard + Medium + Easy: SimGCD data/get_datasets.py get_class_splits
    return tuple(
        c for part in ("HARD", "MEDIUM", "EASY") for c in getattr(cs, f"{prefix}_UNKNOWN_{part}")
    )


def _aircraft(root: Path):
    data = root / "data"
    parts, class_names = [], None
    for split in ("trainval", "test"):
        rows = _columns("aircraft", data / f"images_variant_{split}.txt", 2)
        # find_classes: classes = np.unique(names), so ids follow the sorted variant names
        names = sorted({r[1].strip() for r in rows})
        if class_names is None:
            class_names = names
        index = {n: i for i, n in enumerate(names)}
        parts.append(([f"{r[0]}.jpg" for r in rows], [index[r[1].strip()] for r in rows]))
    if len(class_names) != 100:
        raise _bad("aircraft", f"{len(class_names)} variants instead of 100", data)
    return data / "images", class_names, parts[0], parts[1], cs.AIRCRAFT_KNOWN, _ssb("AIRCRAFT")


def _scars(root: Path):
    from scipy import io as mat_io

    parts = []
    for folder, meta in (
        ("cars_train", "cars_train_annos"),
        ("cars_test", "cars_test_annos_withlabels"),
    ):
        path = _need("scars", root / "devkit" / f"{meta}.mat")
        try:
            annotations = mat_io.loadmat(path)["annotations"][0]
            # CarsDataset: fname = field 5, class (1-based) = field 4
            rows = [(f"{folder}/{a[5][0]}", int(a[4][0][0]) - 1) for a in annotations]
        except Exception as exc:  # scipy raises several types for a malformed .mat
            raise _bad(
                "scars", f"not a devkit annotation file ({type(exc).__name__})", path
            ) from None
        parts.append(([r[0] for r in rows], [r[1] for r in rows]))
    class_names = [f"class {c + 1}" for c in range(196)]
    meta_path = root / "devkit" / "cars_meta.mat"
    if meta_path.exists():
        try:
            names = [str(n[0]) for n in mat_io.loadmat(meta_path)["class_names"][0]]
            class_names[: len(names)] = names[:196]
        except Exception:  # names are a nicety; the split does not need them
            pass
    return root, class_names, parts[0], parts[1], cs.SCARS_KNOWN, _ssb("SCARS")


def _unpickle(name: str, path: Path) -> dict:
    try:
        with open(_need(name, path), "rb") as fh:
            # the CIFAR batches are Python-2 pickles of plain dicts; torchvision reads them so
            return pickle.load(fh, encoding="latin1")  # noqa: S301 - the user's own dataset
    except EntangleValueError:
        raise
    except Exception as exc:
        raise _bad(name, f"not a CIFAR python pickle ({type(exc).__name__})", path) from None


def _cifar(name: str, root: Path):
    ten = name == "cifar10"
    base = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    if not base.is_dir() and (root / ("batches.meta" if ten else "meta")).exists():
        base = root  # ROOT is already the extracted batches folder
    files = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
    key = "labels" if ten else "fine_labels"
    parts, arrays = [], []
    for group in (files, ["test_batch" if ten else "test"]):
        data, ys = [], []
        for f in group:
            entry = _unpickle(name, base / f)
            if "data" not in entry or key not in entry:
                raise _bad(name, f"pickle lacks 'data' or {key!r}", base / f)
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys += list(entry[key])
        arrays.append(np.concatenate(data).transpose(0, 2, 3, 1))
        split = "train" if group is files else "test"
        parts.append(([f"{split}/{i}" for i in range(len(ys))], ys))
    meta = _unpickle(name, base / ("batches.meta" if ten else "meta"))
    class_names = list(meta.get("label_names" if ten else "fine_label_names", []))
    k = 10 if ten else 100
    if len(class_names) != k:
        raise _bad(name, f"meta names {len(class_names)} classes instead of {k}", base)
    old = tuple(range(5)) if ten else tuple(range(80))  # get_class_splits
    new = tuple(range(5, 10)) if ten else tuple(range(80, 100))
    return base, class_names, parts[0], parts[1], old, new, tuple(arrays)


def _image_folder(name: str, folder: Path):
    """torchvision ImageFolder's order: sorted class folders, sorted walk, sorted files."""
    if not folder.is_dir():
        raise _bad(name, "missing", folder)
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    items, ys = [], []
    for c, cname in enumerate(classes):
        count = 0
        for dirpath, _, fnames in sorted(os.walk(folder / cname, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(FOLDER_EXTENSIONS):
                    items.append(str(Path(dirpath, fname).relative_to(folder)))
                    ys.append(c)
                    count += 1
        if count == 0:  # ImageFolder refuses a class folder without images
            raise _bad(name, "class folder without images", folder / cname)
    return classes, items, ys


def _imagenet(name: str, root: Path):
    classes, train_items, train_y = _image_folder(name, root / "train")
    if len(classes) != 1000:
        raise _bad(name, f"{len(classes)} class folders instead of 1000", root / "train")
    val_classes, test_items, test_y = _image_folder(name, root / "val")
    if val_classes != classes:
        raise _bad(name, "val/ does not hold the same class folders as train/", root / "val")
    train_items = [f"train/{p}" for p in train_items]
    test_items = [f"val/{p}" for p in test_items]
    if name == "imagenet1k":
        old, new = tuple(range(500)), tuple(range(500, 1000))
        return root, classes, (train_items, train_y), (test_items, test_y), old, new
    # ImageNet-100: keep the 100 classes, renumbered 0..99 in sorted order (cls_map)
    chosen = np.asarray(cs.IMAGENET100_CLASSES)
    remap = np.full(1000, -1)
    remap[chosen] = np.arange(100)

    def keep(items, ys):
        rows = [(p, int(remap[y])) for p, y in zip(items, ys, strict=True) if remap[y] >= 0]
        return [r[0] for r in rows], [r[1] for r in rows]

    names = [classes[c] for c in chosen]
    train, test = keep(train_items, train_y), keep(test_items, test_y)
    return root, names, train, test, tuple(range(50)), tuple(range(50, 100))


def _herbarium(root: Path):
    classes, train_items, train_y = _image_folder("herbarium19", root / "small-train")
    val_classes, test_items, test_y = _image_folder("herbarium19", root / "small-validation")
    old, new = cs.HERBARIUM19_OLD, cs.HERBARIUM19_NEW
    if len(classes) != len(old) + len(new) or val_classes != classes:
        raise _bad(
            "herbarium19",
            f"{len(classes)} training class folders (validation {len(val_classes)}) instead of "
            f"{len(old) + len(new)} in both",
            root,
        )
    train_items = [f"small-train/{p}" for p in train_items]
    test_items = [f"small-validation/{p}" for p in test_items]
    return root, classes, (train_items, train_y), (test_items, test_y), old, new


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
        raise _bad(name, "not a directory", root)
    arrays = None
    if name in ("cifar10", "cifar100"):
        image_dir, class_names, train, test, old, new, arrays = _cifar(name, root)
    elif name in ("imagenet100", "imagenet1k"):
        image_dir, class_names, train, test, old, new = _imagenet(name, root)
    elif name == "herbarium19":
        image_dir, class_names, train, test, old, new = _herbarium(root)
    else:
        reader = {"cub": _cub, "aircraft": _aircraft, "scars": _scars}[name]
        image_dir, class_names, train, test, old, new = reader(root)
    if arrays is None:
        _check_files(name, image_dir, train[0] + test[0])
    train_labels = np.asarray(train[1], dtype=np.int64)
    test_labels = np.asarray(test[1], dtype=np.int64)
    for part, ys in (("train", train_labels), ("test", test_labels)):
        if ys.size == 0:
            raise _bad(name, f"no {part} images", image_dir)
        if ys.min() < 0 or ys.max() >= len(class_names):
            raise _bad(name, f"{part} class id {int(ys.max())} outside the class list", root)
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
