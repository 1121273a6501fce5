"""Device-side summaries of per-row quantities and the one host sync per probed step."""

from __future__ import annotations

import functools
import math

import torch

from entangle.metrics.gradients import CONFLICT_KEYS
from entangle.runs import keys

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _masked(values: torch.Tensor, mask: torch.Tensor | None):
    """``values`` as float with rows outside ``mask`` set to NaN, and the count of non-NaN rows."""
    x = values.float()
    if mask is not None:
        x = torch.where(mask.to(x.device), x, float("nan"))
    return x, (~torch.isnan(x)).sum()


@functools.lru_cache(maxsize=16)
def _quantiles(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:data:`QUANTILES` as a tensor, copied to each device once: a host-to-device copy
    of Python data in every probed step would wait for the device."""
    return torch.tensor(QUANTILES, device=device, dtype=dtype)


def masked_summary(values: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Mean, std, quantiles and count of ``values[mask]``, computed without a host sync.

    Args:
        values: ``[n]`` per-row values (NaN rows are ignored).
        mask: ``[n]`` bool, or None for all rows.

    Returns:
        dict of 0-dim tensors ``mean, std, q10, q25, q50, q75, q90, n``; NaN when no row counts.
    """
    x, n = _masked(values, mask)
    mean = torch.nansum(x) / n.clamp_min(1)
    mean = torch.where(n > 0, mean, float("nan"))
    var = torch.nansum((x - mean).pow(2)) / n.clamp_min(1)
    # nansum over no rows is 0: an empty group's spread is unknown, not zero
    out = {"mean": mean, "std": torch.where(n > 0, var.sqrt(), float("nan"))}
    qs = torch.nanquantile(x, _quantiles(x.device, x.dtype))
    for q, v in zip(QUANTILES, qs, strict=True):
        out[f"q{round(q * 100)}"] = v
    out["n"] = n
    return out


def conflict_summary(cos: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Mean per-row cosine and share of rows in conflict (cos < 0) among ``mask`` rows."""
    x, n = _masked(cos, mask)
    denom = n.clamp_min(1)
    return {
        "cos_mean": torch.where(n > 0, torch.nansum(x) / denom, float("nan")),
        # NaN < 0 is False, so NaN rows never count as conflicts
        "conflict_frac": torch.where(n > 0, (x < 0).sum() / denom, float("nan")),
        "n": n,
    }


def to_host(tree):
    """Replace every tensor in a nested dict/list by a Python value, in one device sync.

    0-dim tensors become floats (bools and integer counts keep their type); larger tensors
    become lists.
    """
    leaves: list[torch.Tensor] = []

    def collect(node):
        if isinstance(node, torch.Tensor):
            leaves.append(node)
        elif isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, list | tuple):
            for v in node:
                collect(v)

    collect(tree)
    if not leaves:
        return tree
    device = leaves[0].device
    flat = torch.cat([t.detach().reshape(-1).to(device, torch.float64) for t in leaves])
    values = flat.cpu().tolist()  # note: the single CPU-GPU sync point of a probed step
    cursor = 0

    def rebuild(node):
        nonlocal cursor
        if isinstance(node, torch.Tensor):
            size = node.numel()
            chunk = values[cursor : cursor + size]
            cursor += size
            if node.dtype == torch.bool:
                chunk = [bool(v) for v in chunk]
            elif not node.dtype.is_floating_point:
                chunk = [int(v) for v in chunk]
            return chunk[0] if node.ndim == 0 else chunk
        if isinstance(node, dict):
            return {k: rebuild(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [rebuild(v) for v in node]
        return node

    return rebuild(tree)


def nan_reasons(record: dict) -> dict:
    """Why a probed value is NaN, from host-side values: one reason per affected group."""
    reasons = {}
    losses = record.get(keys.LOSSES, {})
    bad_loss = [k for k, v in losses.items() if not math.isfinite(v)]
    no_labeled = record.get(keys.N_LABELED) == 0
    for kind in keys.GRADIENT_KINDS:
        stats = record.get(kind)
        if stats is None:
            continue
        groups = {"": stats} if "cos" in stats else stats
        for name, s in groups.items():
            if not any(_is_nan(s[k]) for k in CONFLICT_KEYS if k != "conflict"):
                continue
            key = f"{kind}.{name}".rstrip(".")
            if bad_loss:
                reasons[key] = f"loss {' and '.join(bad_loss)} is not finite"
            elif not (math.isfinite(s["norm_sup"]) and math.isfinite(s["norm_unsup"])):
                reasons[key] = "gradient not finite (AMP overflow? the scaler skips this step)"
            elif no_labeled and not s["norm_sup"] > 0:
                reasons[key] = "no labeled rows in this batch: the supervised gradient is zero"
            elif not s["norm_sup"] > 0:
                reasons[key] = "supervised gradient is zero on this group"
            elif not s["norm_unsup"] > 0:
                reasons[key] = "unsupervised gradient is zero on this group"
            else:
                reasons[key] = "g_sup + g_unsup is zero (the losses cancel exactly)"
    return reasons


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
