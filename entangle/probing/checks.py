"""Checks of what a loop hands the Probe: one actionable message per usual mistake."""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError
from entangle.probing.attribution import Attributor


def check_features(features, labeled, novel, logits, eagc):
    """Validate ``backward``'s per-row inputs; the masks as bool tensors and the EAGC state.

    Returns ``(labeled, novel, state)``; all None without ``features``.
    """
    if features is None:
        if eagc is not None:
            raise EntangleValueError(
                "Probe with eagc needs features=: pass the tensor eagc.coordinate returned"
            )
        return None, None, None
    if features.ndim != 2:
        raise EntangleValueError(f"features must be [n, D], got shape {tuple(features.shape)}")
    if not features.requires_grad:
        raise EntangleValueError(
            "features does not require grad: pass the tensor the losses were computed from "
            "(z = backbone(x); loss = f(head(z))), not a detached copy"
        )
    n = features.shape[0]
    masks = []
    for name, mask in (("labeled", labeled), ("novel", novel)):
        if mask is None:
            masks.append(None)
            continue
        mask = torch.as_tensor(mask, device=features.device)
        if mask.ndim != 1 or mask.shape[0] != n:
            raise EntangleValueError(
                f"{name} has shape {tuple(mask.shape)} but features have {n} rows; pass "
                "one entry per row (for two views, repeat the mask for both)"
            )
        masks.append(mask.bool())
    if logits is not None and logits.shape[0] != n:
        raise EntangleValueError(
            f"logits have {logits.shape[0]} rows but features {n}; pass matching rows"
        )
    state = None
    if eagc is not None:
        state = eagc.state_for(features)
        if state is None:
            raise EntangleValueError(
                "features was not returned by eagc.coordinate (or by the EAGC given to this "
                "Probe): pass the coordinated tensor to probe.backward"
            )
    return masks[0], masks[1], state


def refuse_clash(extra: dict, own) -> None:
    clash = sorted(set(extra) & set(own))
    if clash:
        raise EntangleValueError(
            f"extra= would overwrite the probe's own record entries {clash}; rename those "
            "keys (ProbeSet results: pass probeset= to Probe instead)"
        )


def attributor_for(groups: dict, attribution, group: str | None, sup_side: bool):
    if attribution is False or attribution is None or attribution == 0:
        return None
    every = 1 if attribution is True else int(attribution)
    name = group if group is not None else next(iter(groups))
    if name not in groups:
        raise EntangleValueError(
            f"attribution_group {name!r} is not a probed group; choose one of {sorted(groups)}"
        )
    return Attributor(name, groups[name], every=every, sup_side=sup_side)
