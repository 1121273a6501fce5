"""One reader per GCD benchmark's published folder layout (docs/benchmarks.md).

Each ``read_*`` returns ``(image_dir, class_names, (train_items, train_ids), (test_items,
test_ids), old_classes, new_classes)`` (CIFAR adds the image arrays); the split rules and the
labeled draw are entangle.data.benchmarks'. A missing or malformed file ends in one
:class:`EntangleValueError` naming it and the layout expected (:func:`bad_layout`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from entangle.data import class_splits as cs
from entangle.errors import EntangleValueError

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


def bad_layout(name: str, what: str, path: Path | str) -> EntangleValueError:
    return EntangleValueError(
        f"{name}: {what}: {path}; expected layout {LAYOUTS[name]} (point {name}:ROOT at its root)"
    )


def _need(name: str, path: Path) -> Path:
    if not path.exists():
        raise bad_layout(name, "missing", path)
    return path


def _columns(name: str, path: Path, ncol: int) -> list[list[str]]:
    """Whitespace-separated rows of a metadata file, each with ``ncol`` fields."""
    try:
        lines = _need(name, path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_layout(name, f"not readable text ({type(exc).__name__})", path) from None
    rows = [ln.split(" ", ncol - 1) for ln in lines if ln.strip()]
    for i, row in enumerate(rows):
        if len(row) != ncol:
            what = f"line {i + 1} does not have {ncol} space-separated fields"
            raise bad_layout(name, what, path)
    return rows


def _int(name: str, text: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_layout(name, f"{text[:40]!r} is not an integer", path) from None


def check_files(name: str, image_dir: Path, items) -> None:
    # SimGCD's CUB reader checks every file (_check_integrity); do the same for every layout
    for item in items:
        if not (image_dir / item).is_file():
            raise bad_layout(name, "image listed but missing", image_dir / item)


def read_cub(root: Path):
    base = root / "CUB_200_2011"
    images = {r[0]: r[1] for r in _columns("cub", base / "images.txt", 2)}
    labels = {r[0]: r[1] for r in _columns("cub", base / "image_class_labels.txt", 2)}
    train = {r[0]: r[1] for r in _columns("cub", base / "train_test_split.txt", 2)}
    image_dir = base / "images"
    parts = {"1": ([], []), "0": ([], [])}
    for img_id, path in images.items():  # images.txt order, as pandas' merge keeps it
        if img_id not in labels or img_id not in train or train[img_id] not in parts:
            raise bad_layout("cub", f"image id {img_id} lacks a class or a 0/1 split", base)
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


def read_aircraft(root: Path):
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
        raise bad_layout("aircraft", f"{len(class_names)} variants instead of 100", data)
    return data / "images", class_names, parts[0], parts[1], cs.AIRCRAFT_KNOWN, _ssb("AIRCRAFT")


def read_scars(root: Path):
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
            raise bad_layout(
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
        raise bad_layout(name, f"not a CIFAR python pickle ({type(exc).__name__})", path) from None


def read_cifar(name: str, root: Path):
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
                raise bad_layout(name, f"pickle lacks 'data' or {key!r}", base / f)
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys += list(entry[key])
        arrays.append(np.concatenate(data).transpose(0, 2, 3, 1))
        split = "train" if group is files else "test"
        parts.append(([f"{split}/{i}" for i in range(len(ys))], ys))
    meta = _unpickle(name, base / ("batches.meta" if ten else "meta"))
    class_names = list(meta.get("label_names" if ten else "fine_label_names", []))
    k = 10 if ten else 100
    if len(class_names) != k:
        raise bad_layout(name, f"meta names {len(class_names)} classes instead of {k}", base)
    old = tuple(range(5)) if ten else tuple(range(80))  # get_class_splits
    new = tuple(range(5, 10)) if ten else tuple(range(80, 100))
    return base, class_names, parts[0], parts[1], old, new, tuple(arrays)


def _image_folder(name: str, folder: Path):
    """torchvision ImageFolder's order: sorted class folders, sorted walk, sorted files."""
    if not folder.is_dir():
        raise bad_layout(name, "missing", folder)
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
            raise bad_layout(name, "class folder without images", folder / cname)
    return classes, items, ys


def read_imagenet(name: str, root: Path):
    classes, train_items, train_y = _image_folder(name, root / "train")
    if len(classes) != 1000:
        raise bad_layout(name, f"{len(classes)} class folders instead of 1000", root / "train")
    val_classes, test_items, test_y = _image_folder(name, root / "val")
    if val_classes != classes:
        raise bad_layout(name, "val/ does not hold the same class folders as train/", root / "val")
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


def read_herbarium(root: Path):
    # the public GCD code (sgvaze/generalized-category-discovery and HaiyangZheng/EAGC
    # data/herbarium_19.py) reads an ImageFolder over small-train/; its "metadata json" comment
    # is never acted on, so Kaggle's train/metadata.json layout is named, not read
    if not (root / "small-train").is_dir() and (root / "train" / "metadata.json").is_file():
        raise bad_layout(
            "herbarium19",
            "this is Kaggle's original layout (train/metadata.json); the GCD code reads its "
            "ImageFolder copy, small-train/<category id>/ and small-validation/<category id>/",
            root,
        )
    classes, train_items, train_y = _image_folder("herbarium19", root / "small-train")
    val_classes, test_items, test_y = _image_folder("herbarium19", root / "small-validation")
    old, new = cs.HERBARIUM19_OLD, cs.HERBARIUM19_NEW
    if len(classes) != len(old) + len(new) or val_classes != classes:
        raise bad_layout(
            "herbarium19",
            f"{len(classes)} training class folders (validation {len(val_classes)}) instead of "
            f"{len(old) + len(new)} in both",
            root,
        )
    train_items = [f"small-train/{p}" for p in train_items]
    test_items = [f"small-validation/{p}" for p in test_items]
    return root, classes, (train_items, train_y), (test_items, test_y), old, new
