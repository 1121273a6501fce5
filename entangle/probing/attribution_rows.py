"""Attribution of a seeded subsample of rows, one per-row VJP each (docs/attribution.md).

The exact share of row i is r_i = <(J g_S)_i, G_U[i]> = <g_S, J_i^T G_U[i]>: the second form
is the inner product of g_S with row i's own unsupervised gradient of the group, J_i^T G_U[i],
which is ONE backward of the probed part with G_U placed on row i (zeros elsewhere). Taken
for m chosen rows, before the training backward frees the graph, it needs no double-backward
graph (and no math attention kernel): the peak holds one row's gradient at a time, like the
training backward, but each row costs one backward of the probed part, so it pays for m
small against the batch (the full set keeps :class:`~entangle.probing.attribution.RowJacobian`).
"""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError
from entangle.probing.attribution import as_float64, group_dot


def chosen_rows(n: int, m: int, step: int) -> torch.Tensor:
    """The batch positions attributed on step ``step``: ``[min(m, n)]`` int64, ascending.

    The first ``m`` of ``torch.randperm(n)`` drawn from a CPU generator seeded with ``step``
    (the probe's step number), so a rerun or a resumed run picks the same rows, and
    consecutive steps pick different ones.
    """
    if int(m) < 1:
        raise EntangleValueError(f"attribution rows must be >= 1, got {m}")
    if int(m) >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(int(step))
    return torch.randperm(n, generator=gen)[: int(m)].sort().values


def row_products_of(
    features: torch.Tensor, params: list, pairs: list[tuple[list, torch.Tensor]], rows
) -> torch.Tensor:
    """``[len(pairs), m]`` float64: <t, J_i^T G[i]> for each (t, G) pair and chosen row i.

    Args:
        features: ``[n, D]`` with the forward graph still alive (before the training backward).
        params: the attributed group theta.
        pairs: (tangent t: one tensor per parameter or None, cotangent G: ``[n, D]``).
        rows: ``[m]`` batch positions (:func:`chosen_rows`).

    Returns:
        the products on ``features``' device; row k is the k-th of ``rows``. A row whose
        gradient does not reach a parameter contributes 0 for it.
    """
    out = torch.zeros(len(pairs), len(rows), dtype=torch.float64, device=features.device)
    pairs = [(as_float64(tangent), cotangent) for tangent, cotangent in pairs]  # once, not per row
    for k, i in enumerate(torch.as_tensor(rows).tolist()):
        for p, (tangent, cotangent) in enumerate(pairs):
            one = torch.zeros_like(features)
            one[i] = cotangent[i].to(features.dtype)
            # row i's own gradient of the group (a per-sample gradient), freed after the dot
            own = torch.autograd.grad(features, params, one, retain_graph=True, allow_unused=True)
            out[p, k] = group_dot(tangent, list(own)).to(out.device)
    return out
