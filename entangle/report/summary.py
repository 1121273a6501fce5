"""The report's summary table: its rows (labels of runs/summary.py's numbers) and formatting.

An imported run has no probed training steps; where ``import-log --attach`` gave it a
checkpoint analysis, its gradient rows show the checkpoint's batch means, labelled in the cell
(:func:`summary_cell`) and explained under the table (:func:`gradient_rows_note`).
"""

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


def summary_cell(summary: dict, metric: Metric) -> str:
    """One run's cell: its own value, else its attached checkpoint's, labelled as such.

    ``summary["checkpoint"]`` is :func:`entangle.runs.summary.checkpoint_gradient_summary`'s
    dict (an imported run's); its numbers are gradient batches at one checkpoint, so the cell
    says so rather than passing them off as the row's training steps.
    """
    text = format_value(summary.get(metric.key), metric.integer)
    checkpoint = summary.get("checkpoint") or {}
    if text != "-" or metric.key not in checkpoint:
        return text
    epoch = format_value(checkpoint.get("epoch"), integer=True)
    batches = format_value(checkpoint.get("batches"), integer=True)
    return (
        f"{format_value(checkpoint[metric.key])} (checkpoint at epoch {epoch}, "
        f"{batches} gradient batches)"
    )


def gradient_rows_note(summary: dict, imported: bool, compared: bool) -> str | None:
    """Why a run without probed steps has no (or checkpoint) gradient rows; None when probed.

    Args:
        summary: the run's summary dict (``checkpoint`` as in :func:`summary_cell`).
        imported: the run came from ``entangle import-log`` (else: written without a Probe).
        compared: the report has a comparison table (several runs).
    """
    if summary.get("probed", True):
        return None
    source = "imported from a training log" if imported else "written without a Probe"
    checkpoint = summary.get("checkpoint") or {}
    if not checkpoint:
        fix = (
            "; entangle import-log FOLDER --attach AN adds an entangle analyze run's gradient "
            "batches at a checkpoint"
            if imported
            else ""
        )
        return f"no probed training steps ({source}): no gradient or ProbeSet SOC rows{fix}"
    epoch = format_value(checkpoint.get("epoch"), integer=True)
    batches = format_value(checkpoint.get("batches"), integer=True)
    note = (
        f"no probed training steps ({source}); the gradient rows marked 'checkpoint' are means "
        f"over the {batches} gradient batches entangle analyze measured at the checkpoint of "
        f"epoch {epoch} (import-log --attach), not over training steps; the median and "
        f"first-{EARLY_STEPS}-steps rows have no checkpoint value"
    )
    if checkpoint.get("attached", 1) > 1:
        note += f" (the last of {checkpoint['attached']} attached checkpoints)"
    if compared:
        note += "; the comparison table leaves them out (not training steps)"
    return note
