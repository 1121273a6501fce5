"""Exact per-row attribution of <g_S, g_U> on a probed parameter group (see docs/attribution.md).

When each row's feature z_i depends on the group theta only through that row (a ViT block,
an MLP; not BatchNorm in train mode), g_U = sum_i J_i^T G_U[i] exactly, with J_i = dz_i/dtheta
and G_U = dL_unsup/dz ``[n, D]``, even for losses that couple rows. Hence

    <g_S, g_U> = sum_i r_i,    r_i = <(J g_S)_i, G_U[i]>,

and ``J t`` for every row at once is ONE Jacobian-vector product. It is computed here by the
double-backward trick on the graph the training forward already built: v(u) = J^T u with
``create_graph`` (u a dummy cotangent), then J t = d<v(u), t>/du. Likewise
s_j = <(J g_U)_j, G_S[j]> attributes the same product over the rows' supervised side.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from entangle.errors import EntangleValueError
from entangle.probing.attribution_graph import (
    check_rows_independent,
    explained_autograd,
    math_attention,
)
from entangle.runs import keys


class RowJacobian:
    """J t for every row, for any number of tangents t, from one double-backward graph.

    Build it BEFORE the training backward frees the forward graph; the products can be
    taken after it (the double-backward graph keeps what it needs).

    Args:
        features: ``[n, D]``.
        params: the group theta (each reaching ``features``).
        at: ``[n, D]`` value of the dummy cotangent u (default zeros). v(u) = J^T u is linear
            in u, so the products J t do not depend on it; with ``at = dL_sup/dz`` the
            create-graph pass also yields the group's g_S (:attr:`value`), which saves the
            Probe a separate backward through the group.
    """

    def __init__(
        self, features: torch.Tensor, params: list[torch.Tensor], at: torch.Tensor | None = None
    ) -> None:
        self.params = list(params)
        self.shape = features.shape
        u = torch.zeros_like(features) if at is None else at.detach().clone()
        self._u = u.requires_grad_(True)
        with torch.enable_grad():
            v = explained_autograd(
                lambda: torch.autograd.grad(
                    features,
                    self.params,
                    self._u,
                    retain_graph=True,
                    create_graph=True,
                    allow_unused=True,
                )
            )
        self._pairs = [(i, t) for i, t in enumerate(v) if t is not None and t.requires_grad]
        # J^T u per parameter (None where unused): g_S of the group when u = dL_sup/dz
        self.value = [None if t is None else t.detach() for t in v]

    def jvp(self, tangent: list[torch.Tensor | None], *, keep: bool = True) -> torch.Tensor:
        """``[n, D]`` rows of J t for the tangent ``t`` (one tensor per parameter, or None)."""
        outs, grads = [], []
        for i, v in self._pairs:
            t = tangent[i]
            if t is not None:
                outs.append(v)
                grads.append(t.to(v.dtype))
        if not outs:
            return torch.zeros(self.shape, device=self._u.device, dtype=self._u.dtype)
        (jt,) = explained_autograd(
            lambda: torch.autograd.grad(
                outs, [self._u], grads, retain_graph=keep, allow_unused=True
            )
        )
        return torch.zeros_like(self._u) if jt is None else jt


def row_products(jt: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
    """``[n]`` float64 per-row inner products <(J t)_i, G[i]>."""
    return (jt.double() * cotangent.double()).sum(dim=1)


def attribution_summary(
    shares: torch.Tensor,
    *,
    labeled: torch.Tensor | None = None,
    novel: torch.Tensor | None = None,
    classes: torch.Tensor | None = None,
    clusters: torch.Tensor | None = None,
    num_classes: int | None = None,
    index: torch.Tensor | None = None,
    top: int = 8,
) -> dict:
    """Aggregate per-row shares of cos(g_S, g_U) by row group, class and cluster.

    Args:
        shares: ``[n]`` r_i / (||g_S|| ||g_U||), summing to cos(g_S, g_U).
        labeled, novel: ``[n]`` bool masks (``novel`` is ground truth: oracle).
        classes: ``[n]`` ground-truth class of every row (oracle), or None.
        clusters: ``[n]`` predicted cluster (argmax of the logits), or None.
        num_classes: length of the class/cluster vectors (e.g. the logits' width).
        index: ``[n]`` dataset index of every row (e.g. SimGCD's ``uq_idxs``).
        top: how many of the most conflicting (most negative) rows to keep.

    Returns:
        dict of device tensors: ``sum``; ``group`` (sums over labeled / unlabeled /
        unlabeled_old / unlabeled_new rows); ``class`` and ``cluster`` ``[K]`` sums over
        UNLABELED rows (``class_outside``: rows whose id is not below K), ``class_rows`` /
        ``cluster_rows`` ``[K]`` how many unlabeled rows each sum has; ``top_index`` /
        ``top_share`` of the most negative rows.
    """
    out: dict = {"sum": shares.sum()}
    if labeled is not None:
        groups = {"labeled": labeled, "unlabeled": ~labeled}
        if novel is not None:
            groups["unlabeled_old"] = ~labeled & ~novel
            groups["unlabeled_new"] = ~labeled & novel
        out["group"] = {k: (shares * m.to(shares.dtype)).sum() for k, m in groups.items()}
    weight = shares if labeled is None else shares * (~labeled).to(shares.dtype)
    for key, ids in (("class", classes), ("cluster", clusters)):
        if ids is None:
            continue
        if num_classes is None:
            raise EntangleValueError(f"attribution: {key} given without num_classes")
        ids = ids.to(shares.device).long()
        # ids outside [0, K) (a head narrower than the classes) are summed apart, not clamped
        inside = ((ids >= 0) & (ids < num_classes)).to(shares.dtype)
        out[key] = torch.zeros(num_classes, dtype=shares.dtype, device=shares.device)
        out[key] = out[key].index_add(0, ids.clamp(0, num_classes - 1), weight * inside)
        out[f"{key}_outside"] = (weight * (1 - inside)).sum()
        # rows per id, so a report can rank by the mean share per row, not by class size
        rows_in = inside if labeled is None else inside * (~labeled).to(shares.dtype)
        out[f"{key}_rows"] = torch.zeros_like(out[key]).index_add(
            0, ids.clamp(0, num_classes - 1), rows_in
        )
    k = min(int(top), shares.shape[0])
    if k > 0:
        values, rows = torch.topk(-shares, k)
        out["top_share"] = -values
        out["top_index"] = rows if index is None else index.to(rows.device)[rows]
        if labeled is not None:
            out["top_labeled"] = labeled[rows]
    return out


def as_float64(values: list) -> list:
    """Each entry flattened in float64 (None stays None), for several :func:`group_dot` calls.

    :func:`group_dot` casts what it is given; cast once here, its ``.double()`` on these is a
    no-op, so the dots are the same numbers without a copy of every gradient per call.
    """
    return [None if x is None else x.double().reshape(-1) for x in values]


def group_dot(a: list, b: list) -> torch.Tensor:
    """<a, b> over a group's parameters in float64 (None entries count as zero)."""
    parts = [
        (x.double().reshape(-1) @ y.double().reshape(-1))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None
    ]
    return torch.stack(parts).sum() if parts else torch.zeros((), dtype=torch.float64)


class Attributor:
    """The Probe's attribution of one parameter group, every ``every``-th probed step.

    Args:
        group: name of the attributed group in the Probe's records.
        params: its parameters (each must reach the features).
        every: attribute one probed step in ``every``.
        top: most conflicting rows kept per step.
        sup_side: also split over the rows' supervised side (s_j); one more product per
            step, so off by default.
        rows: None (default): every row, through :class:`RowJacobian`. An int m: a seeded
            subsample of m rows per attributed step, one per-row backward each
            (probing/attribution_rows.py), without the double-backward graph's memory;
            not with ``sup_side``.
    """

    def __init__(
        self,
        group: str,
        params: list,
        *,
        every: int = 1,
        top: int = 8,
        sup_side: bool = False,
        rows: int | None = None,
    ) -> None:
        if int(every) < 1:
            raise EntangleValueError(f"attribution every must be >= 1, got {every}")
        if rows is not None and int(rows) < 1:
            raise EntangleValueError(f"attribution_rows must be >= 1 (None: all rows), got {rows}")
        if rows is not None and sup_side:
            raise EntangleValueError(
                "attribution_sup_side needs every row (its products use g_U, known only after "
                "the training backward); drop attribution_rows or attribution_sup_side"
            )
        self.group, self.params, self.every, self.top = group, list(params), int(every), top
        self.sup_side = bool(sup_side)
        self.rows = None if rows is None else int(rows)
        self._checked = False

    def is_due(self, probed: int) -> bool:
        """Whether the probed step number ``probed`` (0, 1, ... in probe order) is attributed.

        Counting from the Probe's own step number keeps a resumed run on the same schedule.
        """
        return probed % self.every == 0

    def forward_context(self, probed: int | None):
        """Math attention for the forward of an attributed step (``probed`` None: not probed).

        A subsample's per-row backwards need no double backward: fused kernels stay.
        """
        due = probed is not None and self.rows is None and self.is_due(probed)
        return math_attention() if due else nullcontext()

    def check(self, features: torch.Tensor) -> None:
        """:func:`check_rows_independent`, once: a loop's graph keeps its structure."""
        if not self._checked:
            check_rows_independent(features, self.params)
            self._checked = True

    def prepare(
        self, features: torch.Tensor, probed: int, at: torch.Tensor | None = None
    ) -> RowJacobian | None:
        """On a due step, the row Jacobian (built before the training backward), else None.

        ``at``: the dummy cotangent's value (see :class:`RowJacobian`), e.g. dL_sup/dz.
        """
        if not self.is_due(probed):
            return None
        self.check(features)
        return RowJacobian(features, self.params, at)

    def measure(self, jac: RowJacobian, g_s: list, g_u: list, feat_s, feat_u, **rows) -> dict:
        """Shares of cos(g_S, g_U) for this group's gradients ``g_s``/``g_u``.

        Args:
            jac: from :meth:`prepare`.
            g_s, g_u: per-parameter supervised / unsupervised gradients of the group.
            feat_s, feat_u: ``[n, D]`` the matching cotangents at the features.
            **rows: ``labeled, novel, classes, clusters, num_classes, index`` as in
                :func:`attribution_summary`.

        Returns:
            dict of device tensors: ``closure`` (sum_i r_i / <g_S, g_U>, 1 up to rounding
            when the decomposition holds), ``unsup_rows`` (r_i shares aggregated) and
            ``sup_rows`` (s_j shares by row group; with ``sup_side`` only).
        """
        r = row_products(jac.jvp(g_s), feat_u)
        s = row_products(jac.jvp(g_u), feat_s) if self.sup_side else None
        return self.result(r, g_s, g_u, s=s, **rows)

    def result(
        self, r, g_s: list, g_u: list, *, s=None, chosen=None, of=None, seed=None, **rows
    ) -> dict:
        """The record entry from the products r_i (and s_j) of :meth:`measure`.

        ``chosen``: None when ``r`` has every row, else the ``[m]`` batch positions of its
        rows, a subsample of ``of`` rows drawn with ``seed``: its shares are the full
        computation's for those rows, summed over them only, and the entry says so
        (``subsample``).
        """
        g_s, g_u = as_float64(g_s), as_float64(g_u)  # once, not once per dot
        ss, uu, su = group_dot(g_s, g_s), group_dot(g_u, g_u), group_dot(g_s, g_u)
        denom = (ss * uu).sqrt().to(r.device)
        safe = torch.where(denom > 0, denom, 1.0)
        nan = float("nan")  # a Python scalar: no host-to-device copy
        r_share = torch.where(denom > 0, r / safe, nan)
        out: dict = {}
        if chosen is None or len(chosen) == of:  # the closure check needs every row
            su = su.to(r.device)
            out["closure"] = torch.where(su != 0, r.sum() / torch.where(su != 0, su, 1.0), nan)
        if chosen is not None:
            rows = _restricted(rows, chosen)
            out[keys.ATTRIBUTION_SUBSAMPLE] = {
                "rows": len(chosen),
                "of": of,
                "batch_rows": chosen,
                "seed": seed,
            }
        out["unsup_rows"] = attribution_summary(r_share, top=self.top, **rows)
        if s is not None:
            s_share = torch.where(denom > 0, s / safe, nan)
            labeled, novel = rows.get("labeled"), rows.get("novel")
            out["sup_rows"] = attribution_summary(s_share, labeled=labeled, novel=novel, top=0)
        return out


def _restricted(rows: dict, chosen: torch.Tensor) -> dict:
    """The per-row masks and ids at the ``chosen`` batch positions; top rows named by them."""
    out = {
        k: (v[chosen.to(v.device)] if isinstance(v, torch.Tensor) else v) for k, v in rows.items()
    }
    out["index"] = chosen if rows.get("index") is None else out["index"]
    return out
