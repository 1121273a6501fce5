"""Curves an imported training log holds: its logged losses per step and per epoch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entangle.report.figures import colors, new_figure, no_data, smooth, style, suptitle, text
from entangle.report.records import as_float, path_series

# TensorBoard series drawn per run at most (the rest are in steps.jsonl)
MAX_SERIES = 8


def _step_series(run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (step [n], value [n]) of the logged per-step numbers of one run."""
    names: list[str] = []
    for key in ("log_losses", "scalars"):
        for rec in run.steps:
            for name in rec.get(key) or {}:
                if (key, name) not in names:
                    names.append((key, name))
    out = {}
    for key, name in names:
        x, y = path_series(run.steps, key, name)
        if np.isfinite(y).any():
            out[name] = (x, y)
    return dict(list(out.items())[:MAX_SERIES])


def has_logged_curves(runs: Sequence) -> bool:
    """True when some run holds imported per-step losses/scalars or epoch average losses."""
    return any(
        _step_series(r) or path_series(r.epochs, "loss_avg", x_key="epoch")[0].size for r in runs
    )


def logged_figure(runs: Sequence):
    """Logged per-step losses (smoothed) and epoch average loss, one column per run.

    Returns None when no run was imported from a log (nothing to draw).
    """
    if not has_logged_curves(runs):
        return None
    with style():
        fig, axes = new_figure(2, len(runs))
        for j, run in enumerate(runs):
            name = text(run.name)
            ax = axes[0, j]
            series = _step_series(run)
            for (label, (x, y)), color in zip(series.items(), colors(len(series)), strict=True):
                ok = np.isfinite(y)
                ax.plot(
                    x, smooth(np.where(ok, y, np.nan)), color=color, lw=1.5, label=text(label, 30)
                )
            if series:
                ax.legend(loc="best", fontsize="x-small")
            else:
                no_data(ax, "no per-step values logged")
            ax.set_title(f"{name}: logged per step (smoothed)", fontsize="medium")
            ax.set_xlabel("step (epoch x batches + batch; TensorBoard: its step)")
            ax.set_ylabel("value as logged")
            ax = axes[1, j]
            ep, loss = path_series(run.epochs, "loss_avg", x_key="epoch")
            ok = np.isfinite(loss)
            if ok.any():
                ax.plot(ep[ok], loss[ok], marker="o", ms=3, color=colors(1)[0])
            else:
                no_data(ax, "no epoch average loss logged")
            last = as_float(loss[ok][-1]) if ok.any() else float("nan")
            ax.set_title(f"{name}: epoch average loss (last {last:.4g})", fontsize="medium")
            ax.set_xlabel("epoch")
            ax.set_ylabel("average training loss")
        suptitle(fig, "Values read from imported training logs (entangle import-log)")
        return fig
