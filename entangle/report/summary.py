"""The report's summary table: its rows (labels of runs/summary.py's numbers) and formatting."""

from __future__ import annotations

import math
from dataclasses import dataclass

from entangle.runs.records import as_float
from entangle.runs.summary import EARLY_STEPS


@dataclass(frozen=True)
class Metric:
    """One row of the summary table."""

    key: str
    label: str
    integer: bool = False


def summary_metrics(has_eagc: bool) -> list[Metric]:
    """Rows of the summary table, EAGC-corrected rows only when some run recorded them."""
    early = f"first {EARLY_STEPS} training steps"
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
        Metric("soc_early", f"ProbeSet SOC (subset, see the note), {early}"),
        Metric("soc_all", "ProbeSet SOC (subset), whole run"),
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
