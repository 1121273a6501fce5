"""Checks of what a loop hands the Probe: one actionable message per usual mistake."""

from __future__ import annotations

import math

import torch

from entangle.errors import EntangleValueError
from entangle.metrics.energy import SIMGCD_LOGIT_TEMPERATURE
from entangle.probing.attribution import Attributor
from entangle.probing.measurements import Measurement


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


def attributor_for(
    groups: dict, attribution, group: str | None, sup_side: bool, rows: int | None = None
):
    if attribution is False or attribution is None or attribution == 0:
        return None
    every = 1 if attribution is True else int(attribution)
    name = group if group is not None else next(iter(groups))
    if name not in groups:
        raise EntangleValueError(
            f"attribution_group {name!r} is not a probed group; choose one of {sorted(groups)}"
        )
    return Attributor(name, groups[name], every=every, sup_side=sup_side, rows=rows)


def check_every(every) -> None:
    """``Probe(every=)`` is a positive integer."""
    if int(every) < 1:
        raise EntangleValueError(f"every must be a positive integer, got {every}")


def check_coordinator(coordinator, eagc, index: dict) -> None:
    """A gradient coordinator excludes EAGC and acts only on probed parameters (``index``)."""
    if coordinator is not None and eagc is not None:
        raise EntangleValueError("give Probe an eagc or a gradient coordinator, not both")
    if coordinator is not None and any(id(p) not in index for p in coordinator.params):
        raise EntangleValueError(
            "the coordinator's parameters must all be in the probed groups; add them to "
            "params (e.g. an 'all' group)"
        )


def temperature_of(logit_temperature: float | None) -> tuple[float, str]:
    """``(T, source)``: the given softmax temperature, else SimGCD's (``"SimGCD default"``)."""
    source = "given" if logit_temperature is not None else "SimGCD default"
    if logit_temperature is None:
        logit_temperature = SIMGCD_LOGIT_TEMPERATURE
    if not 0 < float(logit_temperature) < math.inf:
        raise EntangleValueError(
            f"logit_temperature must be a positive number, got {logit_temperature}"
        )
    return float(logit_temperature), source


def check_measurement(part, keys: frozenset) -> None:
    """``part`` is a Measurement whose keys clash with none of ``keys`` (the probe's)."""
    if not isinstance(part, Measurement):
        raise EntangleValueError(f"add_measurement takes a Measurement, got {type(part).__name__}")
    clash = sorted(set(part.keys) & keys)
    if clash:
        raise EntangleValueError(
            f"{type(part).__name__} would write record keys the probe writes already "
            f"{clash}; give it keys of its own"
        )
