"""A run's summary numbers from its records: accuracy, gradient conflict, GDC, SOC, NaN counts.

One implementation each, read by the DONE summary (gcd/evaluate.py), ``analyze`` and the
report's summary table (report/summary.py holds the table's rows and number formatting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from entangle.runs import keys
from entangle.runs.records import (
    PREFERRED_GROUP,
    as_float,
    dig,
    gradient_series,
    nan_step_count,
    path_series,
)

# statistics over the start of training, where the paper sees most of the entanglement
EARLY_STEPS = 200


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _nanmedian(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def _conflict_rate(cos: np.ndarray) -> float:
    x = cos[~np.isnan(cos)]
    return float((x < 0).mean()) if x.size else math.nan


def _early(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    if steps.size == 0:
        return values
    return values[steps < steps.min() + EARLY_STEPS]


def accuracy_summary(epochs: Sequence[Mapping]) -> dict[str, float]:
    """All/Old/New accuracy at the epoch with the best All accuracy and at the last epoch."""
    out = {f"acc_{g}_{w}": math.nan for g in ("all", "old", "new") for w in ("best", "last")}
    out["best_epoch"] = math.nan
    rows = [
        e
        for e in epochs
        if isinstance(e, Mapping) and not math.isnan(as_float(e.get(keys.ACC_ALL)))
    ]
    if not rows:
        return out
    best = max(rows, key=lambda e: as_float(e.get(keys.ACC_ALL)))
    last = rows[-1]
    for g, key in keys.ACC_KEYS.items():
        out[f"acc_{g}_best"] = as_float(best.get(key))
        out[f"acc_{g}_last"] = as_float(last.get(key))
    out["best_epoch"] = as_float(best.get(keys.EPOCH))
    return out


def gradient_summary(steps: Sequence[Mapping], kind: str, group: str) -> dict[str, float]:
    """Cosine conflict and GDC statistics of one kind (``raw`` or ``eagc``) of record."""
    x, cos = gradient_series(steps, kind, keys.COS, group)
    _, gdc = gradient_series(steps, kind, keys.GDC, group)
    return {
        f"cos_mean_{kind}": _nanmean(cos),
        f"cos_median_{kind}": _nanmedian(cos),
        f"conflict_rate_{kind}": _conflict_rate(cos),
        f"gdc_early_{kind}": _nanmean(_early(x, gdc)),
        f"gdc_all_{kind}": _nanmean(gdc),
    }


def run_summary(steps: Sequence[Mapping], epochs: Sequence[Mapping], group: str) -> dict:
    """Every summary-table number of one run (NaN where the run did not record it)."""
    out = accuracy_summary(epochs)
    for kind in (keys.RAW, *keys.APPLIED_KINDS):
        out.update(gradient_summary(steps, kind, group))
    x, soc = path_series(steps, keys.PROBESET, keys.SOC)
    out["soc_early"] = _nanmean(_early(x, soc))
    out["soc_all"] = _nanmean(soc)
    _, soc_epochs = path_series(epochs, keys.SOC, x_key=keys.EPOCH)
    out["soc_last_epoch"] = float(soc_epochs[-1]) if soc_epochs.size else math.nan
    out["steps"] = len(steps)
    out["nan_steps"] = nan_step_count(steps)
    _, raw_cos = gradient_series(steps, keys.RAW, keys.COS, group)
    out["nan_cos_raw"] = int(np.isnan(raw_cos).sum())
    return out


def checkpoint_gradient_summary(epochs: Sequence[Mapping], group: str = "") -> dict:
    """The gradient rows of a checkpoint analysis attached to an imported run, or ``{}``.

    ``import-log --attach`` stores means over ``entangle analyze``'s gradient batches at the
    checkpoint under an evaluation's ``checkpoint.gradients`` (logs/attach.py). These are
    not training steps: the report shows them labelled, never as the run's step statistics.
    Returns ``{"epoch": E, "batches": n, "attached": count, "cos_mean_raw": ...,
    "conflict_rate_raw": ..., "gdc_all_raw": ..., <the same per applied kind>}`` for the last
    attached epoch (only the metrics it recorded), ``attached`` the number of attached epochs.
    """
    found = [
        e
        for e in epochs
        if isinstance(e, Mapping)
        and isinstance(dig(e, keys.CHECKPOINT, keys.CHECKPOINT_GRADIENTS), Mapping)
    ]
    if not found:
        return {}
    rec = found[-1]
    gradients = dig(rec, keys.CHECKPOINT, keys.CHECKPOINT_GRADIENTS)
    out: dict = {
        "epoch": as_float(rec.get(keys.EPOCH)),
        "batches": as_float(gradients.get(keys.GRADIENT_BATCHES)),
        "attached": len(found),
    }
    # the checkpoint's conflict is its batches' share with cos < 0, as the steps' rate
    names = {keys.COS: "cos_mean", keys.CONFLICT: "conflict_rate", keys.GDC: "gdc_all"}
    for kind in (keys.RAW, *keys.APPLIED_KINDS):
        by_group = gradients.get(kind)
        if not isinstance(by_group, Mapping) or not by_group:
            continue
        chosen = next((g for g in (group, PREFERRED_GROUP) if g in by_group), next(iter(by_group)))
        values = by_group.get(chosen)
        for key, name in names.items():
            v = as_float(values.get(key)) if isinstance(values, Mapping) else math.nan
            if not math.isnan(v):
                out[f"{name}_{kind}"] = v
    return out
