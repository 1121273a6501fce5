"""One probed step as the Probe's measurements see it, and the gradient helpers they share.

The Probe core fills a :class:`ProbedStep` (docs/architecture.md, "Probe parts"): the raw
per-loss gradients it took, the training gradient its one training backward captured, the
feature gradients, the masks. Measurements read it and add their own passes or entries; none
of them recomputes what the core already has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from entangle.metrics import rowwise_cosine
from entangle.probing.summaries import conflict_summary


@dataclass
class ProbedStep:
    """What the core knows about one probed ``backward`` call.

    Attributes:
        step: the call's 0-based index (the record's ``step``).
        probed: the index among probed calls (``step // every``).
        sup, unsup: the scalar losses, unscaled; ``scaled(loss)`` applies the step's scaler.
        scale: the GradScaler's scale (0-dim) or None.
        params: every probed parameter once; gradient lists follow this order.
        features: ``[n, D]`` the feature tensor, or None; ``labeled`` / ``novel`` ``[n]`` bool.
        logits: ``[n, K]`` or None; ``rows``: ``targets`` / ``index`` given to ``backward``.
        state: the EAGC coordination state of ``features`` (read-only), or None.
        raw_sup: raw g_S per parameter (+ dL_sup/dz last when features are given).
        raw_unsup: with EAGC, raw g_U per parameter (+ dL_unsup/dz last), else None.
        total: the training gradient per parameter (corrected with EAGC).
        raw_u, raw_total: what the raw group metrics use (g_U; the exact total or None).
        g_s, g_u: ``[n, D]`` raw feature gradients of each loss (None without features).
        corrected_sup: EAGC-corrected g_S per parameter, filled by the EAGC-corrected part.
        applied: with a gradient coordinator, the update it applied per parameter, else None.
        histograms: per-row tensors kept for a histogram sink this step, or None (no sink
            wants them: measurements then keep nothing).
        metrics: ``metrics(sup_grads, unsup_grads, total_grads=None)`` -> the conflict
            statistics per parameter group (the core's, all-reduced under DDP).
    """

    step: int
    probed: int
    sup: torch.Tensor
    unsup: torch.Tensor
    scaler: object
    scale: torch.Tensor | None
    params: list
    features: torch.Tensor | None
    labeled: torch.Tensor | None
    novel: torch.Tensor | None
    logits: torch.Tensor | None
    rows: dict
    state: object
    metrics: Callable
    raw_sup: list = field(default_factory=list)
    raw_unsup: list | None = None
    total: list = field(default_factory=list)
    raw_u: list = field(default_factory=list)
    raw_total: list | None = None
    g_s: torch.Tensor | None = None
    g_u: torch.Tensor | None = None
    corrected_sup: list | None = None
    applied: list | None = None
    histograms: dict | None = None
    _corrected: tuple | None = None

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` in the units the backward uses (multiplied by the scaler's scale)."""
        return scaled(loss, self.scaler)

    def corrected_feature_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """EAGC's corrected dL_sup/dz (P + AGA) and dL_unsup/dz (P only), computed once."""
        if self._corrected is None:
            self._corrected = (
                self.state.transform(self.g_s, "full"),
                self.state.transform(self.g_u, "linear"),
            )
        return self._corrected

    def keep_rows(self, name: str, values: torch.Tensor) -> None:
        """Keep per-row values for a histogram sink (references only, no host sync)."""
        if self.histograms is not None:
            self.histograms[name] = values
            self.histograms["labeled"] = self.labeled


def scaled(loss: torch.Tensor, scaler):
    return scaler.scale(loss) if scaler is not None else loss


def grads(loss: torch.Tensor, inputs: list) -> list:
    """d loss / d input for each input (None where unused), keeping the graph."""
    if not loss.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True))


def minus(total: list, part: list) -> list:
    """``total - part`` per entry, None meaning zero."""
    out = []
    for t, s in zip(total, part, strict=False):
        if t is None:
            out.append(None if s is None else -s)
        else:
            out.append(t if s is None else t - s)
    return out


def flat(grads: list, params: list) -> torch.Tensor:
    pairs = zip(grads, params, strict=True)
    parts = [g if g is not None else torch.zeros_like(p) for g, p in pairs]
    return torch.cat([part.reshape(-1) for part in parts])


def products(sup: list, unsup: list, total: list | None = None) -> torch.Tensor:
    """``[<s,s>, <u,u>, <s,u>, <s,t>, <t,t>]`` summed over parameters in float64, without flat
    copies; t is ``total`` (the captured training gradient) or s + u elementwise."""
    parts = []
    total = [None] * len(sup) if total is None else total
    for s, u, t in zip(sup, unsup, total, strict=True):
        if s is None and u is None:
            continue
        s = torch.zeros_like(u) if s is None else s
        u = torch.zeros_like(s) if u is None else u
        s, u = s.reshape(-1), u.reshape(-1)
        t = s + u if t is None else t.reshape(-1)
        parts.append(torch.stack([s @ s, u @ u, s @ u, s @ t, t @ t]).double())
    if not parts:
        return torch.zeros(5, dtype=torch.float64)
    return torch.stack(parts).sum(0)


def or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g


def row_groups(labeled, novel) -> dict:
    """The row groups a per-row summary is split into (all, or labeled / unlabeled / ...)."""
    if labeled is None:
        return {"all": None}
    groups = {"labeled": labeled, "unlabeled": ~labeled}
    if novel is not None:
        groups["unlabeled_old"] = ~labeled & ~novel
        groups["unlabeled_new"] = ~labeled & novel
    return groups


def feature_conflict(g_s, g_u, labeled, novel) -> dict:
    cos = rowwise_cosine(g_s, g_u, warn=False)
    return {k: conflict_summary(cos, m) for k, m in row_groups(labeled, novel).items()}
