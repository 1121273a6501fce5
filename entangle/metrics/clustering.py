"""Clustering accuracy under the GCD "v2" protocol."""

from __future__ import annotations

import numpy as np
import torch

from entangle.errors import EntangleValueError, warn_degenerate


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise EntangleValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return arr


def hungarian_mapping(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """Cluster-to-class mapping that maximises the matched count (one assignment, all classes).

    Args:
        y_true: ``[n]`` non-negative integer classes.
        y_pred: ``[n]`` non-negative integer cluster ids.

    Returns:
        dict cluster id -> class id for the clusters that occur in ``y_pred`` (clusters left
        unmatched, when there are more clusters than classes, are absent).
    """
    from scipy.optimize import linear_sum_assignment

    # index the ids that occur, not 0..max id: ids can be large (hashes, sparse cluster labels)
    clusters, pred_idx = np.unique(y_pred, return_inverse=True)
    classes, true_idx = np.unique(y_true, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols, strict=True)}


def cluster_accuracy(y_true, y_pred, old_mask) -> tuple[float, float, float]:
    """GCD v2 clustering accuracy: one Hungarian assignment over all classes; All/Old/New from it.

    Args:
        y_true: ``[n]`` ground-truth classes of the unlabeled samples.
        y_pred: ``[n]`` predicted cluster ids (any non-negative integers).
        old_mask: ``[n]`` True where the ground-truth class is an old (known) class.

    Returns:
        ``(all, old, new)`` accuracies in [0, 1]; ``old`` / ``new`` are NaN (with a warning)
        when no sample of that kind is present.
    """
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
    mapping = hungarian_mapping(y_true, y_pred)
    mapped = np.array([mapping.get(int(p), -1) for p in y_pred])
    hit = mapped == y_true
    results = [float(hit.mean())]
    for name, mask in (("old", old_mask), ("new", ~old_mask)):
        if mask.any():
            results.append(float(hit[mask].mean()))
        else:
            warn_degenerate(f"cluster_accuracy: no {name}-class samples; '{name}' accuracy is NaN")
            results.append(float("nan"))
    return results[0], results[1], results[2]
