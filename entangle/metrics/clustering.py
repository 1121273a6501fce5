"""Clustering accuracy under the field's three GCD protocols: v1, v2 and v2b.

- ``v2`` (SimGCD, EAGC and most later work): one Hungarian assignment of clusters to classes
  over all unlabeled samples; All, Old and New are read off that single mapping.
- ``v1`` (the original GCD code): one assignment for the old-class samples and another for the
  new-class samples, each on its own; All is their sample-weighted mean.
- ``v2b`` (SimGCD's "balanced" variant): the v2 mapping, then each class's recall; All, Old
  and New are the unweighted means of the per-class recalls.

See docs/accuracy.md for the formulas and which papers report which.
"""

from __future__ import annotations

import numpy as np
import torch

from entangle.errors import EntangleValueError, warn_degenerate

ACCURACY_PROTOCOLS = ("v1", "v2", "v2b")
DEFAULT_PROTOCOL = "v2"


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise EntangleValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return arr


# Beyond this many ids a dense D x D count matrix (D^2 int64) costs too much memory; the
# compact matrix over the ids that occur gives the same matched count, but may break ties
# between equally good assignments differently from the public code.
_DENSE_IDS_MAX = 4096


def hungarian_mapping(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """Cluster-to-class mapping that maximises the matched count (one assignment, all classes).

    As the public GCD and SimGCD code (``util/cluster_and_log_utils.py``): a square
    ``D x D`` count matrix over ids ``0..D-1`` (``D = max id + 1``) and
    ``linear_sum_assignment(w.max() - w)``, so that ties between equally good assignments
    break the same way and Old/New (v2) and the per-class means (v2b) equal theirs. Ids past
    4096 use a compact matrix over the ids that occur (same matched count; ties may differ).

    Args:
        y_true: ``[n]`` non-negative integer classes.
        y_pred: ``[n]`` non-negative integer cluster ids.

    Returns:
        dict cluster id -> class id for the clusters that occur in ``y_pred`` (clusters left
        unmatched, when there are more clusters than classes, are absent).
    """
    from scipy.optimize import linear_sum_assignment

    size = int(max(y_pred.max(), y_true.max())) + 1
    if size <= _DENSE_IDS_MAX:
        counts = np.zeros((size, size), dtype=np.int64)
        np.add.at(counts, (y_pred, y_true), 1)
        rows, cols = linear_sum_assignment(counts.max() - counts)
        present = set(np.unique(y_pred).tolist())
        return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if int(r) in present}
    clusters, pred_idx = np.unique(y_pred, return_inverse=True)
    classes, true_idx = np.unique(y_true, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols, strict=True)}


def _hits(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``[n]`` bool: sample i's cluster is mapped to its class by one Hungarian assignment."""
    if len(y_true) == 0:
        return np.zeros(0, dtype=bool)
    mapping = hungarian_mapping(y_true, y_pred)
    return np.array([mapping.get(int(p), -1) for p in y_pred]) == y_true


def _group_mean(values: np.ndarray, name: str) -> float:
    if values.size:
        return float(values.mean())
    warn_degenerate(
        f"cluster_accuracy: no {name}-class samples; '{name}' accuracy is NaN", stacklevel=4
    )
    return float("nan")


def _v2(y_true, y_pred, old_mask) -> tuple[float, float, float]:
    hit = _hits(y_true, y_pred)
    return float(hit.mean()), _group_mean(hit[old_mask], "old"), _group_mean(hit[~old_mask], "new")


def _v2b(y_true, y_pred, old_mask) -> tuple[float, float, float]:
    hit = _hits(y_true, y_pred)
    classes = np.unique(y_true)
    recall = np.array([hit[y_true == c].mean() for c in classes])
    # old_mask is a function of the class, so the first sample of a class tells its group
    old_class = np.array([old_mask[np.argmax(y_true == c)] for c in classes])
    return (
        float(recall.mean()),
        _group_mean(recall[old_class], "old"),
        _group_mean(recall[~old_class], "new"),
    )


def _v1(y_true, y_pred, old_mask) -> tuple[float, float, float]:
    hit_old = _hits(y_true[old_mask], y_pred[old_mask])
    hit_new = _hits(y_true[~old_mask], y_pred[~old_mask])
    # the original weights the two accuracies by the share of old samples: the same as the
    # share of all samples matched under the two mappings
    acc_all = (hit_old.sum() + hit_new.sum()) / len(y_true)
    return float(acc_all), _group_mean(hit_old, "old"), _group_mean(hit_new, "new")


_PROTOCOLS = {"v1": _v1, "v2": _v2, "v2b": _v2b}


def cluster_accuracy(
    y_true, y_pred, old_mask, protocol: str = DEFAULT_PROTOCOL
) -> tuple[float, float, float]:
    """GCD clustering accuracy (All, Old, New) of predicted clusters under one protocol.

    Args:
        y_true: ``[n]`` ground-truth classes of the unlabeled samples.
        y_pred: ``[n]`` predicted cluster ids (any non-negative integers).
        old_mask: ``[n]`` True where the ground-truth class is an old (known) class.
        protocol: ``"v2"`` (one Hungarian mapping over all classes), ``"v1"`` (one mapping
            per group, the original GCD code) or ``"v2b"`` (v2 mapping, mean per-class
            recall, SimGCD's balanced variant). See docs/accuracy.md.

    Returns:
        ``(all, old, new)`` accuracies in [0, 1]; ``old`` / ``new`` are NaN (with a warning)
        when no sample of that kind is present.

    Example:
        >>> cluster_accuracy([0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0], "v1")
        (1.0, 1.0, 1.0)
    """
    if protocol not in _PROTOCOLS:
        raise EntangleValueError(
            f"cluster_accuracy: unknown protocol {protocol!r}; use one of {ACCURACY_PROTOCOLS}"
        )
    y_true = _to_numpy(y_true, "y_true").astype(np.int64)
    y_pred = _to_numpy(y_pred, "y_pred").astype(np.int64)
    old_mask = _to_numpy(old_mask, "old_mask").astype(bool)
    if not (len(y_true) == len(y_pred) == len(old_mask)):
        raise EntangleValueError(
            f"cluster_accuracy: y_true, y_pred and old_mask must have the same length, got "
            f"{len(y_true)}, {len(y_pred)} and {len(old_mask)}"
        )
    if len(y_true) == 0:
        raise EntangleValueError("cluster_accuracy: no samples given")
    if y_true.min() < 0 or y_pred.min() < 0:
        raise EntangleValueError("cluster_accuracy: classes and cluster ids must be >= 0")
    return _PROTOCOLS[protocol](y_true, y_pred, old_mask)


def cluster_accuracies(
    y_true, y_pred, old_mask, protocols=(DEFAULT_PROTOCOL,)
) -> dict[str, dict[str, float]]:
    """:func:`cluster_accuracy` under several protocols.

    Returns:
        ``{protocol: {"all", "old", "new"}}`` in the order of ``protocols``.
    """
    out = {}
    for protocol in protocols:
        acc = cluster_accuracy(y_true, y_pred, old_mask, protocol)
        out[protocol] = dict(zip(("all", "old", "new"), acc, strict=True))
    return out


def accuracy_protocols(spec) -> tuple[str, ...]:
    """Protocol names from ``"v1,v2,v2b"`` (or a sequence of names), checked, order kept.

    The first one is the protocol of a record's ``acc_all`` / ``acc_old`` / ``acc_new``.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in _PROTOCOLS]
    if unknown or not names:
        raise EntangleValueError(
            f"accuracy protocols: got {spec!r}; give a comma list of "
            f"{', '.join(ACCURACY_PROTOCOLS)} (e.g. 'v2' or 'v1,v2,v2b')"
        )
    return tuple(dict.fromkeys(names))
