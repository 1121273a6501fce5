"""What ``entangle analyze`` reads besides the checkpoint: a data source or precomputed features.

Two kinds of input:

- a training-recipe source (``digits``, ``synthetic``, ``imagefolder:PATH``, ``cifar10:PATH``,
  ``cifar100:PATH``) loaded with :func:`entangle.data.datasets.load_source`; the model embeds it;
- ``features:FILE.npz``: precomputed arrays for models entangle cannot build -- ``features``
  ``[n, D]``, ``labels`` ``[n]``, ``labeled`` ``[n]`` and optionally ``novel`` ``[n]``,
  ``old_classes`` ``[m]``, ``logits`` ``[n, K]``, ``class_names`` ``[K]``. Analyses that
  need the model's forward or backward are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from entangle.checkpoints import CheckpointError
from entangle.data.datasets import GCDData, _parse_old_classes, load_source
from entangle.defaults import LABELED_FRACTION
from entangle.errors import EntangleValueError
from entangle.runs.untrusted import load_npz


@dataclass
class FeatureData:
    """Precomputed features of a GCD training set (``features:FILE.npz``).

    Attributes:
        features: ``[n, D]`` float32.
        labels: ``[n]`` int64 ground-truth classes.
        labeled: ``[n]`` bool, the labeled set.
        novel: ``[n]`` bool, true class is novel.
        old_classes: the known classes.
        class_names: one name per class id.
        logits: ``[n, K]`` classifier logits, or None.
        source: the file, for messages.
    """

    features: torch.Tensor
    labels: torch.Tensor
    labeled: torch.Tensor
    novel: torch.Tensor
    old_classes: list[int]
    class_names: list[str]
    logits: torch.Tensor | None
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_inputs(
    spec: str,
    *,
    old_classes=None,
    labeled_fraction: float = LABELED_FRACTION,
    seed: int = 0,
    max_samples: int | None = None,
    labeled_split: str | Path | None = None,
) -> GCDData | FeatureData:
    """Load ``spec`` (a recipe source or ``features:FILE.npz``), optionally subsampled.

    Args:
        spec: data source, see the module docstring.
        old_classes, labeled_fraction, seed: as in :func:`entangle.data.datasets.load_source`
            (for ``features:`` only ``old_classes`` is read, when the file has no ``novel``).
        max_samples: keep at most this many samples, chosen at random with ``seed`` (the split
            is made on the whole set first, so the labeled share is unchanged in expectation).
        labeled_split: a text file naming the user's own labeled samples, one per line
            (``#`` comments allowed): a sample index into the source's order, or a sample
            name (for ``imagefolder:`` the file name or its path relative to the folder). It
            replaces entangle's random labeled split; old / novel classes are unchanged.

    Raises:
        EntangleValueError: unknown source, unreadable or inconsistent feature file, too few
            samples left to analyse.
    """
    if max_samples is not None and max_samples < 2:
        raise EntangleValueError(f"max_samples must be at least 2, got {max_samples}")
    kind, _, path = str(spec).partition(":")
    if kind.strip().lower() == "features":
        data = load_feature_file(path, old_classes=old_classes)
    else:
        data = load_source(
            spec, old_classes=old_classes, labeled_fraction=labeled_fraction, seed=seed
        )
    if labeled_split is not None:
        data = with_labeled_split(data, labeled_split)
    if max_samples is not None and len(data) > max_samples:
        g = torch.Generator().manual_seed(int(seed) + 11)
        keep = torch.randperm(len(data), generator=g)[:max_samples].sort().values
        data = subset(data, keep)
    if not bool(data.labeled.any()) or not bool((~data.labeled).any()):
        raise EntangleValueError(
            f"{spec}: the analysis needs labeled and unlabeled samples, got "
            f"{int(data.labeled.sum())} labeled of {len(data)}; raise --max-samples or "
            "change --labeled-fraction"
        )
    return data


def sample_names(data: GCDData | FeatureData, root: Path | None = None) -> list[list[str]] | None:
    """Names each sample can be given by in a labeled-split file (None: indices only)."""
    paths = getattr(getattr(data, "x", None), "paths", None)
    if paths is None:
        return None
    out = []
    for p in paths:
        p = Path(p)
        names = [p.name, str(p)]
        if len(p.parts) >= 2:
            names.append(str(Path(*p.parts[-2:])))  # class/file.jpg
        out.append(names)
    return out


def with_labeled_split(data: GCDData | FeatureData, path: str | Path) -> GCDData | FeatureData:
    """``data`` with the labeled samples named in the file ``path`` (see :func:`load_inputs`).

    Raises:
        EntangleValueError: unreadable file, an entry that names no sample, a labeled sample
            of a novel class, or no labeled sample at all.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EntangleValueError(f"--labeled-split {path}: cannot read it ({exc})") from exc
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise EntangleValueError(
            f"--labeled-split {path}: no entries; write one labeled sample index or name per line"
        )
    n = len(data)
    lookup: dict[str, int] = {}
    for i, names in enumerate(sample_names(data) or []):
        for name in names:
            lookup.setdefault(name, i)
    labeled = torch.zeros(n, dtype=torch.bool)
    for entry in entries:
        if entry.lstrip("-").isdigit():
            i = int(entry)
            if not 0 <= i < n:
                raise EntangleValueError(
                    f"--labeled-split {path}: index {i} is outside the data's {n} samples "
                    "(indices count from 0 in the source's order)"
                )
        elif entry in lookup:
            i = lookup[entry]
        else:
            hint = "file names or class/file paths" if lookup else "sample indices"
            raise EntangleValueError(
                f"--labeled-split {path}: {entry!r} names no sample of this data; use {hint}"
            )
        labeled[i] = True
    bad = torch.nonzero(labeled & data.novel).flatten()
    if bad.numel():
        i = int(bad[0])
        raise EntangleValueError(
            f"--labeled-split {path}: sample {i} (class {data.class_names[int(data.labels[i])]!r})"
            f" is labeled but its class is novel; label only old-class samples or add the class "
            "to --old-classes"
        )
    return replace(data, labeled=labeled)


def subset(data: GCDData | FeatureData, rows: torch.Tensor) -> GCDData | FeatureData:
    """The samples ``rows`` ``[m]`` (long, ascending) of ``data``, with their masks."""
    masks = {"labels": data.labels[rows], "labeled": data.labeled[rows], "novel": data.novel[rows]}
    if isinstance(data, FeatureData):
        logits = None if data.logits is None else data.logits[rows]
        return replace(data, features=data.features[rows], logits=logits, **masks)
    if data.in_memory:
        x = data.x[rows.to(data.x.device)]
    else:
        x = torch.utils.data.Subset(data.x, rows.tolist())
    return replace(data, x=x, **masks)


def _array(npz, key: str, path: Path, ndim: int) -> np.ndarray:
    value = np.asarray(npz[key])
    if value.ndim != ndim:
        raise EntangleValueError(
            f"{path}: '{key}' must be {ndim}-D, got shape {value.shape}; see `entangle analyze "
            "--help` for the features:FILE.npz layout"
        )
    return value


def load_feature_file(path: str | Path, *, old_classes=None) -> FeatureData:
    """Read a ``features:FILE.npz`` (object arrays refused: no pickles).

    Without ``novel`` in the file, old classes come from ``old_classes`` (a count, or a comma
    list of ids) or else from the file's ``old_classes`` array, or else are the classes that
    have labeled samples.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise EntangleValueError(f"features: no file at {path}; pass features:FILE.npz")
    npz = load_npz(path, what="features:")
    files = set(npz)
    missing = [k for k in ("features", "labels", "labeled") if k not in files]
    if missing:
        raise EntangleValueError(
            f"features: {path} lacks {', '.join(missing)} (has {', '.join(sorted(files))}); "
            "expected features [n, D], labels [n], labeled [n] and optionally novel [n], "
            "old_classes, logits [n, K]"
        )
    feats = _array(npz, "features", path, 2).astype(np.float32)
    labels = _array(npz, "labels", path, 1)
    labeled = _array(npz, "labeled", path, 1).astype(bool)
    novel = _array(npz, "novel", path, 1).astype(bool) if "novel" in files else None
    file_old = _array(npz, "old_classes", path, 1) if "old_classes" in files else None
    logits = _array(npz, "logits", path, 2).astype(np.float32) if "logits" in files else None
    names = (
        [str(s) for s in _array(npz, "class_names", path, 1)] if ("class_names" in files) else None
    )
    n = feats.shape[0]
    lengths = {"labels": len(labels), "labeled": len(labeled)}
    if novel is not None:
        lengths["novel"] = len(novel)
    if logits is not None:
        lengths["logits"] = logits.shape[0]
    if any(v != n for v in lengths.values()):
        raise EntangleValueError(
            f"features: {path} holds {n} feature rows but {lengths}; every array needs one "
            "entry per sample"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (n and labels.min() < 0):
        raise EntangleValueError(
            f"features: {path}: labels must be non-negative integers, got dtype {labels.dtype}"
        )
    k = int(labels.max()) + 1 if n else 0
    names = names or [str(c) for c in range(k)]
    if len(names) < k:
        raise EntangleValueError(
            f"features: {path} names {len(names)} classes but labels go up to {k - 1}"
        )
    labels_t = torch.from_numpy(labels.astype(np.int64))
    if novel is not None:
        old = sorted({int(c) for c in labels[~novel]})
    else:
        if old_classes is not None:
            old = _parse_old_classes(old_classes, names, [])
        elif file_old is not None:
            old = sorted({int(c) for c in file_old})
        else:
            old = sorted({int(c) for c in labels[labeled]})
        novel = ~np.isin(labels, old)
    if (labeled & novel).any():
        raise EntangleValueError(
            f"features: {path} marks {int((labeled & novel).sum())} samples both labeled and "
            "novel; labeled samples must come from old classes"
        )
    return FeatureData(
        features=torch.from_numpy(feats),
        labels=labels_t,
        labeled=torch.from_numpy(labeled),
        novel=torch.from_numpy(np.asarray(novel, dtype=bool)),
        old_classes=old,
        class_names=names,
        logits=None if logits is None else torch.from_numpy(logits),
        source=str(path),
    )


def check_classes(num_classes: int | None, data: GCDData | FeatureData, source: str) -> list[str]:
    """Refuse a head that cannot label every class of the data; return notes.

    Args:
        num_classes: ``K`` of the checkpoint's head (None: no head, nothing to check).
        data: the loaded data.
        source: the checkpoint, for the message.

    Raises:
        CheckpointError: ``K`` is smaller than the number of classes in the data, or not
            larger than the number of old classes.
    """
    if num_classes is None:
        return []
    n_data, n_old = data.num_classes, len(data.old_classes)
    if num_classes < n_data or num_classes <= n_old:
        raise CheckpointError(
            f"{source}: the head has K={num_classes} classes but the data has {n_data} classes "
            f"({n_old} old, {n_data - n_old} novel); the checkpoint was trained on another "
            "split or data set: pass the matching --data and --old-classes"
        )
    if num_classes > n_data:
        return [f"the head has K={num_classes} clusters for {n_data} classes in the data"]
    return []
