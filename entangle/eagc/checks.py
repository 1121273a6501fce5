"""The checks EAGC makes before correcting: input shapes and devices, and loss scaling.

Each refuses with one :class:`~entangle.errors.EntangleValueError` naming the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from entangle.eagc.state import CoordinationState
from entangle.errors import EntangleValueError

if TYPE_CHECKING:
    from entangle.eagc.coordinator import EAGC


def check_inputs(conceptor, features, labeled, reference) -> torch.Tensor:
    """Refuse features, mask or reference that do not fit ``conceptor`` ``[D, D]``.

    Returns the labeled mask ``[n]`` as a bool tensor on ``features``' device.
    """
    if features.ndim != 2:
        raise EntangleValueError(
            f"EAGC: features must be [n, D], got shape {tuple(features.shape)}"
        )
    d = conceptor.shape[0]
    if features.shape[1] != d:
        raise EntangleValueError(
            f"EAGC: conceptor is [{d}, {d}] but features are {tuple(features.shape)}; fit "
            "the conceptor on features of the layer you coordinate"
        )
    labeled = torch.as_tensor(labeled, device=features.device)
    if labeled.ndim != 1 or labeled.shape[0] != features.shape[0]:
        raise EntangleValueError(
            f"EAGC: labeled mask has shape {tuple(labeled.shape)} but features are "
            f"{tuple(features.shape)}; pass one entry per row (stack the mask for two views)"
        )
    if reference is not None and reference.shape != features.shape:
        raise EntangleValueError(
            f"EAGC: reference features have shape {tuple(reference.shape)} but features "
            f"are {tuple(features.shape)}; run the reference model on the same inputs"
        )
    if reference is not None and reference.device != features.device:
        raise EntangleValueError(
            f"EAGC: reference features are on {reference.device} but features on "
            f"{features.device}; run the reference model on the same device"
        )
    return labeled.bool()


def check_scaling(features: torch.Tensor, scaler, eagc: EAGC | None = None) -> None:
    """Refuse a backward whose loss scaling differs from the one ``coordinate`` was told.

    The AGA term is added in the units of the incoming gradient: a scaler given to only one
    of ``eagc.coordinate`` and ``probe.backward`` multiplies (or divides) it by the loss
    scale, the reference code's AMP defect. ``features`` not coordinated (by ``eagc`` or any
    other EAGC): nothing to check. Python-side only, no host sync.
    """
    state = eagc.state_for(features) if eagc is not None else None
    if state is None:  # coordinated by an EAGC the caller was not given
        state = getattr(features.grad_fn, "state", None)
    if not isinstance(state, CoordinationState):
        return
    scaled = scaler is not None and scaler.is_enabled()
    if scaled != state.scaled:
        given, missing = (
            ("probe.backward", "eagc.coordinate")
            if scaled
            else ("eagc.coordinate", "probe.backward")
        )
        raise EntangleValueError(
            f"a GradScaler was given to {given} but not to {missing}: the AGA term would be "
            "off by the loss scale; pass the same scaler= to both (or to neither)"
        )
