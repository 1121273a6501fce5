"""Feature overlap between known and novel classes as k-nearest-neighbour mixing."""

from __future__ import annotations

import torch

from entangle.defaults import KNN_K
from entangle.errors import EntangleValueError, warn_degenerate
from entangle.metrics._tensors import as_mask, as_matrix


def knn_indices(points: torch.Tensor, k: int, *, chunk: int = 2048) -> torch.Tensor:
    """Indices of each row's k nearest other rows (Euclidean), memory-bounded by chunking.

    Args:
        points: ``[n, D]``.
        k: neighbours per row, at most n - 1.

    Returns:
        ``[n, k]`` long tensor, self excluded.
    """
    n = points.shape[0]
    out = []
    for start in range(0, n, chunk):
        block = points[start : start + chunk]
        dist = torch.cdist(block, points)
        rows = torch.arange(block.shape[0], device=points.device)
        dist[rows, rows + start] = float("inf")
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def knn_overlap(features, novel, k: int = KNN_K, *, metric: str = "cosine") -> dict:
    """Share of each group's k nearest neighbours that come from the other group.

    Args:
        features: ``[n, D]`` features (or 2-D t-SNE coordinates).
        novel: ``[n]`` True for samples of novel classes, False for old classes.
        k: neighbours per sample.
        metric: ``"cosine"`` (rows L2-normalised first) or ``"euclidean"``.

    Returns:
        dict of floats: ``new_to_old`` mean share of a novel sample's neighbours that are old,
        ``old_to_new`` the reverse, and ``new_to_old_chance`` / ``old_to_new_chance``, the
        shares expected if the groups were perfectly mixed. NaN (with a warning) for an empty
        group.
    """
    x = as_matrix(features, "features")
    is_new = as_mask(novel, x.shape[0], "novel").to(x.device)
    n = x.shape[0]
    if metric not in ("cosine", "euclidean"):
        raise EntangleValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if not 1 <= k <= n - 1:
        raise EntangleValueError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    if metric == "cosine":
        # on unit vectors Euclidean order equals cosine order
        x = torch.nn.functional.normalize(x, dim=1)
    neighbour_is_new = is_new[knn_indices(x, k)].float()
    n_new = int(is_new.sum())
    n_old = n - n_new
    nan = float("nan")
    result = {
        "new_to_old": nan,
        "old_to_new": nan,
        "new_to_old_chance": n_old / (n - 1) if n_new else nan,
        "old_to_new_chance": n_new / (n - 1) if n_old else nan,
    }
    if n_new:
        result["new_to_old"] = float(1.0 - neighbour_is_new[is_new].mean())
    if n_old:
        result["old_to_new"] = float(neighbour_is_new[~is_new].mean())
    if not (n_new and n_old):
        warn_degenerate("knn_overlap: one group is empty; its overlap is NaN")
    return result
