"""Fake benchmark trees in the exact published layouts, tiny enough to build in a test.

Image files are empty unless ``real=True`` (the split readers only check that they exist);
each builder returns the root to pass as ``NAME:ROOT``. The layouts are those the public
readers open (CVMI-Lab/SimGCD data/cub.py, fgvc_aircraft.py, stanford_cars.py, cifar.py,
imagenet.py, herbarium_19.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _touch(path: Path, real: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if real:
        from PIL import Image

        Image.fromarray(np.full((12, 10, 3), 90, dtype=np.uint8)).save(path)
    else:
        path.write_bytes(b"")


def cub_tree(root: Path, train: int = 2, test: int = 1, real: bool = False) -> Path:
    """CUB_200_2011 with ``train`` + ``test`` images per class (200 classes)."""
    base = root / "CUB_200_2011"
    images, labels, split = [], [], []
    img_id = 0
    for c in range(1, 201):
        for j in range(train + test):
            img_id += 1
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{j:04d}_{img_id}.jpg"
            _touch(base / "images" / rel, real and c == 151)
            images.append(f"{img_id} {rel}")
            labels.append(f"{img_id} {c}")
            split.append(f"{img_id} {1 if j < train else 0}")
    for name, rows in (
        ("images", images),
        ("image_class_labels", labels),
        ("train_test_split", split),
    ):
        (base / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def aircraft_variants() -> list[str]:
    """100 variant names whose sorted order differs from their listing order (spaces included)."""
    return [f"Model {(37 * i) % 100:02d}-{'AB'[i % 2]}" for i in range(100)]


def aircraft_tree(root: Path, train: int = 2, test: int = 1) -> Path:
    data = root / "data"
    rows = {"trainval": [], "test": []}
    img = 1000000
    for name in aircraft_variants():
        for j in range(train + test):
            img += 1
            _touch(data / "images" / f"{img}.jpg")
            rows["trainval" if j < train else "test"].append(f"{img} {name}")
    for split, lines in rows.items():
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def scars_tree(root: Path, train: int = 2, test: int = 1) -> Path:
    from scipy import io as mat_io

    (root / "devkit").mkdir(parents=True)
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    for folder, meta, per in (
        ("cars_train", "cars_train_annos", train),
        ("cars_test", "cars_test_annos_withlabels", test),
    ):
        n = 196 * per
        annos = np.zeros((1, n), dtype=[(f, object) for f in fields])
        for i in range(n):
            fname = f"{i + 1:05d}.jpg"
            _touch(root / folder / fname)
            # classes interleaved (1, 2, ..., 196, 1, 2, ...) as the devkit lists them unsorted
            annos[0, i] = (1, 2, 3, 4, np.array([[i % 196 + 1]], dtype=np.uint8), fname)
        mat_io.savemat(root / "devkit" / f"{meta}.mat", {"annotations": annos})
    return root


def cifar_tree(root: Path, name: str, per_class: int = 2) -> Path:
    """torchvision's extracted CIFAR folder: ``per_class`` images per class per train batch."""
    ten = name == "cifar10"
    k = 10 if ten else 100
    base = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    base.mkdir(parents=True)
    key = "labels" if ten else "fine_labels"
    rng = np.random.default_rng(0)

    def dump(fname, n_rep):
        ys = [c for _ in range(n_rep) for c in range(k)]
        data = rng.integers(0, 255, size=(len(ys), 3072), dtype=np.uint8)
        with open(base / fname, "wb") as fh:
            pickle.dump({"data": data, key: ys}, fh)

    for f in [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]:
        dump(f, per_class)
    dump("test_batch" if ten else "test", 1)
    names = {"label_names" if ten else "fine_label_names": [f"c{c}" for c in range(k)]}
    with open(base / ("batches.meta" if ten else "meta"), "wb") as fh:
        pickle.dump(names, fh)
    return root


def folder_tree(root: Path, classes: list[str], parts: dict[str, int]) -> Path:
    """ImageFolder trees ``root/<part>/<class>/`` with ``parts[part]`` files per class."""
    for part, per in parts.items():
        for c in classes:
            for j in range(per):
                _touch(root / part / c / f"{c}_{j}.JPEG")
    return root


def imagenet_tree(root: Path) -> Path:
    return folder_tree(root, [f"n{i:08d}" for i in range(1000)], {"train": 2, "val": 1})


def herbarium_tree(root: Path) -> Path:
    # folder names are the category ids; ImageFolder sorts them as strings ("0", "1", "10", ...)
    return folder_tree(
        root, [str(i) for i in range(683)], {"small-train": 2, "small-validation": 1}
    )
