"""One ``coordinate`` call's decision and the autograd function that applies it.

:class:`CoordinationState` holds the per-row EEP weights and the AGA term a call computed in
its forward pass; ``_Coordinate`` is the identity in forward and applies the state's transform
to the feature gradient in backward (docs/quantities.md, EAGC). Kept apart from the
coordinator (entangle/eagc/coordinator.py), which builds these states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CoordinationState:
    """What one ``coordinate`` call decided: the per-row EEP weights and the AGA term.

    Attributes:
        weights: ``[n]`` EEP coefficients w_i (0 for labeled rows), float32.
        aga: ``[n, D]`` AGA term c m_i (z_i - z_i^ref) in unscaled units, or None.
        energy: ``[n]`` energy ratios of this call's features (None when EEP is off).
        scale: loss scale the AGA term is multiplied by (GradScaler), a 0-dim tensor or 1.0.
        mode: ``"full"`` (P(g) + AGA, training), ``"linear"`` (P(g) only), ``"identity"``,
            or ``"authors"`` (P(g) + AGA with ``previous_weights``: the EAGC authors'
            diagnostic, docs/quantities.md); the Probe switches it to measure raw, corrected
            and the authors' per-loss gradients.
        previous_weights: the EEP weights of the previous ``coordinate`` call (None on the
            first call, or when its row count differed): what the authors' ``compute_gdc``
            projects with.
        scaled: whether ``coordinate`` was given an enabled GradScaler; the Probe refuses a
            backward whose scaling differs (the AGA term would be off by the loss scale).
    """

    weights: torch.Tensor | None
    aga: torch.Tensor | None
    conceptor: torch.Tensor
    energy: torch.Tensor | None = None
    scale: torch.Tensor | float = 1.0
    mode: str = "full"
    mu: torch.Tensor | None = None
    fired: int = field(default=0)
    scaled: bool = False
    previous_weights: torch.Tensor | None = None

    def transform(self, grad: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Apply the correction to a feature gradient ``[n, D]`` (any float dtype)."""
        mode = mode or self.mode
        if mode == "identity":
            return grad
        g = grad.to(self.conceptor.dtype)
        out = g
        weights = self.previous_weights if mode == "authors" else self.weights
        if weights is not None:
            # C is symmetric, so (C g_i) for every row is g @ C
            out = out - weights[:, None] * (g @ self.conceptor)
        if mode in ("full", "authors") and self.aga is not None:
            out = out + self.aga * self.scale
        return out.to(grad.dtype)


_MODES = ("full", "linear", "identity", "authors")


class _Coordinate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, state):
        ctx.state = state
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad):
        ctx.state.fired += 1
        return ctx.state.transform(grad), None


class _Accumulation:
    def __init__(self, micro_batches: int):
        self.micro_batches = micro_batches
        self.total: torch.Tensor | None = None

    def add(self, total: torch.Tensor) -> None:
        self.total = total if self.total is None else self.total + total


def loss_scale(scaler, device) -> torch.Tensor | None:
    """A GradScaler's current scale as a 0-dim device tensor, or None when nothing is scaled.

    Scaling a one gives the scale without a host sync (``scaler.get_scale()`` would sync).
    """
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler.scale(torch.ones((), device=device))
