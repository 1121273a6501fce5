"""GCD data sources: where the samples, labels, class names and default old classes come from.

None downloads anything; :func:`read_source` dispatches on the spec:

- ``digits``: scikit-learn's embedded 8x8 handwritten digits, old 0-4, novel 5-9 (default);
- ``synthetic``: planted Gaussian-mixture features with a controllable old/novel overlap;
- ``imagefolder:PATH``: one sub-folder per class;
- ``NAME:ROOT`` for the GCD benchmarks (``cub``, ``scars``, ``aircraft``, ``cifar10``,
  ``cifar100``, ``imagenet100``, ``imagenet1k``, ``herbarium19``): their published layout and
  split, read by :mod:`entangle.data.benchmarks`.

:func:`parse_old_classes` turns a user's old-class spec into class ids for any of them.
The split and batches live in :mod:`entangle.data.datasets`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from entangle.data.benchmarks import BENCHMARKS, benchmark_source
from entangle.data.images import IMAGE_EXTENSIONS, ArrayImages, ImageFiles
from entangle.errors import EntangleValueError

__all__ = [
    "BENCHMARKS",
    "IMAGE_EXTENSIONS",
    "SOURCES",
    "ArrayImages",
    "ImageFiles",
    "parse_old_classes",
    "read_source",
]

SOURCES = ("digits", "synthetic", "imagefolder:PATH", *(f"{b}:ROOT" for b in BENCHMARKS))

# ---------------------------------------------------------------- old-class resolution


def parse_old_classes(spec, class_names: list[str], default: list[int]) -> list[int]:
    """Turn a count, a list of names/indices, a comma string or a file path into class ids."""
    k = len(class_names)
    if spec is None:
        return default
    source = None
    if isinstance(spec, Path) or (isinstance(spec, str) and Path(spec).is_file()):
        try:
            lines = Path(spec).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EntangleValueError(
                f"--old-classes file {spec} is not readable text ({type(exc).__name__}); give a "
                "text file with one class name or id per line, a count, or a comma list"
            ) from None
        source = spec
        spec = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    elif isinstance(spec, str):
        text = spec.strip()
        spec = int(text) if text.isdigit() else [p.strip() for p in text.split(",") if p.strip()]
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if not 1 <= spec <= k - 1:
            raise EntangleValueError(
                f"old-class count must be between 1 and {k - 1} (the data has {k} classes and "
                f"GCD needs at least one novel class), got {spec}"
            )
        return list(range(int(spec)))
    ids = []
    by_name = {name: i for i, name in enumerate(class_names)}
    for item in spec:
        if isinstance(item, str) and item in by_name:
            ids.append(by_name[item])
        elif isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
            if not 0 <= int(item) < k:
                raise _missing_class(item, class_names)
            ids.append(int(item))
        elif source is not None:
            # the file's content is never echoed (it may be any file the user can read)
            raise EntangleValueError(
                f"--old-classes file {source}: entry {len(ids) + 1} is neither a class name of "
                f"the data nor a class id 0..{k - 1}; give one class name or id per line"
            )
        else:
            raise _missing_class(item, class_names)
    ids = sorted(set(ids))
    if not ids or len(ids) == k:
        raise EntangleValueError(
            f"old classes must name at least one and at most {k - 1} of the {k} classes "
            f"(GCD needs novel classes), got {len(ids)}"
        )
    return ids


def _missing_class(item, class_names: list[str]) -> EntangleValueError:
    shown = ", ".join(class_names[:30]) + (", ..." if len(class_names) > 30 else "")
    return EntangleValueError(
        f"old class {item!r} is not in the data; available classes (names or indices "
        f"0-{len(class_names) - 1}): {shown}"
    )


# kept for callers that imported the private name before it became public
_parse_old_classes = parse_old_classes


# ---------------------------------------------------------------- sources


def _digits(**kw):
    if kw:
        raise EntangleValueError(f"source 'digits' takes no options, got {sorted(kw)}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are counts 0-16; scale to [0, 1] so augmentation can clip
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    names = [str(int(c)) for c in bunch.target_names]
    return x, labels, names, list(range(5)), "digits"


def _synthetic(**kw):
    # lazy: the generator module is optional for everything else in this file
    from entangle.data.synthetic import planted_features

    features, labels, novel = planted_features(**kw)
    labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    novel = np.asarray(novel, dtype=bool)
    k = int(labels.max()) + 1
    default_old = sorted({int(c) for c in labels[torch.from_numpy(~novel)].tolist()})
    names = [f"class {c}" for c in range(k)]
    return (
        torch.from_numpy(np.asarray(features, dtype=np.float32)),
        labels,
        names,
        default_old,
        ("vector"),
    )


def _imagefolder(path: str, **kw):
    if kw:
        raise EntangleValueError(f"source 'imagefolder' takes no options, got {sorted(kw)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise EntangleValueError(f"imagefolder: {root} is not a directory; pass imagefolder:PATH")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [c] * len(files)
    if not paths:
        raise EntangleValueError(
            f"imagefolder: no images under {root} (expected one sub-folder per class holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files)"
        )
    # a class folder without images would be a class nobody can discover: drop it, say so
    present = sorted(set(labels))
    if len(present) < 2:
        raise EntangleValueError(
            f"imagefolder: {root} has images in {len(present)} class folder(s); GCD needs at "
            "least two classes (one old, one novel)"
        )
    remap = {c: i for i, c in enumerate(present)}
    names = [classes[c] for c in present]
    y = torch.tensor([remap[c] for c in labels], dtype=torch.int64)
    return ImageFiles(paths), y, names, list(range(math.ceil(len(names) / 2))), "image"


def _benchmark(name: str, path: str, **kw):
    if kw:
        raise EntangleValueError(f"benchmark {name!r} takes no options, got {sorted(kw)}")
    split, x, targets = benchmark_source(name, path)
    order = list(split.old_classes) + list(split.new_classes)
    names = [split.class_names[c] for c in order]
    return x, targets, names, list(range(len(split.old_classes))), "image"


def read_source(spec: str, *, seed: int = 0, **kw):
    """Load the samples a source spec names, before any old/novel split.

    Args:
        spec: ``"digits"``, ``"synthetic"``, ``"imagefolder:PATH"``, ``"cifar10:PATH"`` or
            ``"cifar100:PATH"``.
        seed: the default ``seed`` of the ``synthetic`` generator.
        **kw: source options (see :func:`entangle.data.datasets.load_source`).

    Returns:
        ``(x, labels, class_names, default_old_classes, input_kind)``: ``x`` a tensor or an
        image ``Dataset`` of ``n`` items, ``labels`` ``[n]`` int64.
    """
    kind, _, path = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "digits" and not path:
        return _digits(**kw)
    elif kind == "synthetic" and not path:
        kw.setdefault("seed", seed)
        return _synthetic(**kw)
    elif kind == "imagefolder" and path:
        return _imagefolder(path, **kw)
    elif kind in BENCHMARKS and path:
        return _benchmark(kind, path, **kw)
    else:
        raise EntangleValueError(
            f"unknown data source {spec!r}; valid sources: {', '.join(SOURCES)}"
        )
