"""Curves an imported training log holds: its logged losses per step and per epoch.

Every logged series is drawn, none dropped: series are grouped by what they are (losses,
learning rate, accuracies, the rest), in that order, and a group of more than
:data:`SERIES_PER_PANEL` series is split over several panels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from entangle.report.figures import colors, new_figure, smooth, style, suptitle, text
from entangle.runs.records import path_series

# lines per panel: more are unreadable; a larger group continues in the next panel
SERIES_PER_PANEL = 8
# (group, pattern on the lower-cased series name), in the order they are drawn
GROUPS = (
    ("losses", re.compile(r"loss")),
    ("learning rate", re.compile(r"(^|[^a-z])lr([^a-z]|$)|learning.?rate")),
    ("accuracies", re.compile(r"acc")),
    ("other values", re.compile(r"")),
)
# where an imported run keeps logged numbers: (record table, key, x axis)
SOURCES = (("steps", "log_losses"), ("steps", "log_values"), ("steps", "scalars"))


def group_of(name: str) -> str:
    """The group a logged series is drawn in (``losses``, ``learning rate``, ...)."""
    return next(g for g, pattern in GROUPS if pattern.search(name.lower()))


def _series(run) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, str]]]:
    """group -> name -> (x [n], value [n], x label) of every logged series of one run."""
    out: dict[str, dict] = {g: {} for g, _ in GROUPS}
    found: list[tuple[str, str, str]] = []
    for table, key in (*SOURCES, ("epochs", "scalars")):
        for rec in getattr(run, table):
            for name in rec.get(key) or {}:
                if (table, key, name) not in found:
                    found.append((table, key, name))
    for table, key, name in found:
        x_key = "epoch" if table == "epochs" else "step"
        x, y = path_series(getattr(run, table), key, name, x_key=x_key)
        if np.isfinite(y).any():
            label = name if table == "steps" else f"{name} (per epoch)"
            out[group_of(name)][label] = (x, y, x_key)
    x, total = path_series(run.steps, "loss")  # the step line's total (SimGCD: 'loss X')
    if np.isfinite(total).any():
        out["losses"]["loss (total)"] = (x, total, "step")
    x, loss = path_series(run.epochs, "loss_avg", x_key="epoch")
    if np.isfinite(loss).any():
        out["losses"]["epoch average loss (per epoch)"] = (x, loss, "epoch")
    return out


def panels(run) -> list[tuple[str, dict]]:
    """``(title, {label: (x, y, x_key)})`` per panel, all series of one axis kind together."""
    out = []
    for group, series in _series(run).items():
        for x_key in ("step", "epoch"):
            items = [(k, v) for k, v in series.items() if v[2] == x_key]
            chunks = range(0, len(items), SERIES_PER_PANEL)
            for part, i in enumerate(chunks):
                title = f"{group}, per {x_key}"
                if len(chunks) > 1:
                    title += f" ({part + 1} of {len(chunks)})"
                out.append((title, dict(items[i : i + SERIES_PER_PANEL])))
    return out


def has_logged_curves(runs: Sequence) -> bool:
    """True when some run holds imported per-step / per-epoch values."""
    return any(panels(r) for r in runs)


def logged_figure(runs: Sequence):
    """Every logged series of each run, grouped (losses, lr, accuracies, rest), one column per run.

    Returns None when no run was imported from a log (nothing to draw).
    """
    per_run = [panels(r) for r in runs]
    n_rows = max((len(p) for p in per_run), default=0)
    if n_rows == 0:
        return None
    with style():
        fig, axes = new_figure(n_rows, len(runs))
        for j, (run, run_panels) in enumerate(zip(runs, per_run, strict=True)):
            for i in range(n_rows):
                ax = axes[i, j]
                if i >= len(run_panels):
                    ax.set_visible(False)  # this run has fewer groups: no empty frame
                    continue
                title, series = run_panels[i]
                for (label, (x, y, x_key)), color in zip(
                    series.items(), colors(len(series)), strict=True
                ):
                    y = np.where(np.isfinite(y), y, np.nan)
                    if x_key == "step":
                        ax.plot(x, smooth(y), color=color, lw=1.5, label=text(label))
                    else:
                        ax.plot(x, y, color=color, lw=1.5, marker="o", ms=3, label=text(label))
                ax.legend(loc="best", fontsize="x-small")
                ax.set_title(f"{text(run.name)}: {title}", fontsize="medium")
                ax.set_xlabel(
                    "step (epoch x batches + batch), smoothed" if "per step" in title else "epoch"
                )
                ax.set_ylabel("value as logged")
        suptitle(fig, "Values read from imported training logs (entangle import-log)")
        return fig
