"""The numbers of the summary table: accuracy, gradient conflict, GDC, SOC and NaN counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from entangle.report.records import (
    as_float,
    gradient_series,
    nan_step_count,
    path_series,
)

# statistics over the start of training, where the paper sees most of the entanglement
EARLY_STEPS = 200


@dataclass(frozen=True)
class Metric:
    """One row of the summary table."""

    key: str
    label: str
    integer: bool = False


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
        e for e in epochs if isinstance(e, Mapping) and not math.isnan(as_float(e.get("acc_all")))
    ]
    if not rows:
        return out
    best = max(rows, key=lambda e: as_float(e.get("acc_all")))
    last = rows[-1]
    for g in ("all", "old", "new"):
        out[f"acc_{g}_best"] = as_float(best.get(f"acc_{g}"))
        out[f"acc_{g}_last"] = as_float(last.get(f"acc_{g}"))
    out["best_epoch"] = as_float(best.get("epoch"))
    return out


def gradient_summary(steps: Sequence[Mapping], kind: str, group: str) -> dict[str, float]:
    """Cosine conflict and GDC statistics of one kind (``raw`` or ``eagc``) of record."""
    x, cos = gradient_series(steps, kind, "cos", group)
    _, gdc = gradient_series(steps, kind, "gdc", group)
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
    out.update(gradient_summary(steps, "raw", group))
    out.update(gradient_summary(steps, "eagc", group))
    out.update(gradient_summary(steps, "coordinated", group))
    x, soc = path_series(steps, "probeset", "soc")
    out["soc_early"] = _nanmean(_early(x, soc))
    out["soc_all"] = _nanmean(soc)
    _, soc_epochs = path_series(epochs, "soc", x_key="epoch")
    out["soc_last_epoch"] = float(soc_epochs[-1]) if soc_epochs.size else math.nan
    out["steps"] = len(steps)
    out["nan_steps"] = nan_step_count(steps)
    _, raw_cos = gradient_series(steps, "raw", "cos", group)
    out["nan_cos_raw"] = int(np.isnan(raw_cos).sum())
    return out


def summary_metrics(has_eagc: bool) -> list[Metric]:
    """Rows of the summary table, EAGC-corrected rows only when some run recorded them."""
    early = f"first {EARLY_STEPS} steps"
    rows = [
        Metric("acc_all_best", "Accuracy All (best epoch)"),
        Metric("acc_old_best", "Accuracy Old (best epoch)"),
        Metric("acc_new_best", "Accuracy New (best epoch)"),
        Metric("best_epoch", "Best epoch (by All)", integer=True),
        Metric("acc_all_last", "Accuracy All (last epoch)"),
        Metric("acc_old_last", "Accuracy Old (last epoch)"),
        Metric("acc_new_last", "Accuracy New (last epoch)"),
    ]
    kinds = [("raw", "raw")] + ([("eagc", "EAGC")] if has_eagc else [])
    for kind, label in kinds:
        rows += [
            Metric(f"cos_mean_{kind}", f"Mean cos(g_S, g_U), {label}"),
            Metric(f"cos_median_{kind}", f"Median cos(g_S, g_U), {label}"),
            Metric(f"conflict_rate_{kind}", f"Conflict rate (cos < 0), {label}"),
            Metric(f"gdc_early_{kind}", f"GDC, {label}, {early}"),
            Metric(f"gdc_all_{kind}", f"GDC, {label}, whole run"),
        ]
    rows += [
        Metric("soc_early", f"ProbeSet SOC, {early}"),
        Metric("soc_all", "ProbeSet SOC, whole run"),
        Metric("soc_last_epoch", "SOC over all samples, last evaluation"),
        Metric("steps", "Probed steps", integer=True),
        Metric("nan_steps", "Steps with a NaN metric", integer=True),
        Metric("nan_cos_raw", "Steps without a raw cosine", integer=True),
    ]
    return rows


def format_value(value, integer: bool = False) -> str:
    """Table text for a number: ``-`` for NaN/None, integers plain, floats to 4 digits."""
    v = as_float(value)
    if math.isnan(v):
        return "-"
    if integer:
        return str(int(round(v)))
    return f"{v:.4f}"


def format_delta(value, reference, integer: bool = False) -> str:
    """Signed difference ``value - reference`` as text; ``-`` when either is missing."""
    a, b = as_float(value), as_float(reference)
    if math.isnan(a) or math.isnan(b):
        return "-"
    d = a - b
    return f"{int(round(d)):+d}" if integer else f"{d:+.4f}"
