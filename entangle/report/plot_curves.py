"""Curves over training: gradient conflict, GDC, norm ratio, ProbeSet SOC and accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entangle.report.figures import colors, new_figure, no_data, smooth, style, suptitle, text
from entangle.report.load import is_analysis

# the report imports the verdict (and scipy) anyway; nothing is gained by importing it late
from entangle.report.verdict import label as setting_label
from entangle.report.verdict import settings
from entangle.runs import keys
from entangle.runs.records import gradient_series, path_series

KINDS = ((keys.RAW, "raw"), (keys.EAGC, "EAGC-corrected"))
# the conflict figure's rows: (metric, y label, panel title)
CONFLICT_ROWS = (
    (keys.COS, "cos(g_S, g_U)", "cosine conflict"),
    (keys.GDC, "GDC = 1 - cos(g_S, g_S + g_U)", "GDC"),
)


def x_label(run) -> str:
    """What a run's step axis counts: training steps, or an analysed checkpoint's gradient
    batches (same frozen weights: no order in time, so no smoothing either)."""
    return "gradient batch (frozen checkpoint)" if is_analysis(run) else "training step"


def curve(run, y):
    """The line drawn through a run's step values: smoothed for training, as is for a
    checkpoint's few gradient batches."""
    return np.asarray(y, dtype=np.float64) if is_analysis(run) else smooth(y)


def _over(runs) -> str:
    """``over training`` / ``per gradient batch of each checkpoint`` for a figure's title."""
    if all(is_analysis(r) for r in runs):
        return "per gradient batch of each checkpoint"
    return "over training" if not any(is_analysis(r) for r in runs) else "per step or batch"


def _accuracy_x(run, ep):
    """An analysed checkpoint's one evaluation sits at its own epoch (the file's), not 0."""
    own = getattr(run, "checkpoint_epoch", None)
    return np.full(len(ep), float(own)) if is_analysis(run) and own is not None else ep


def _smoothed_points(ax, x, y, color, label, *, positive=False, run=None) -> bool:
    """Raw points faint, smoothed line solid (a checkpoint's batches: points joined, not
    smoothed); False when there is nothing to draw."""
    ok = np.isfinite(y) & (y > 0 if positive else True)
    if not ok.any():
        return False
    if is_analysis(run):
        ax.plot(x[ok], y[ok], color=color, marker="o", ms=4, lw=1.0, label=f"{label}, per batch")
        return True
    ax.scatter(x[ok], y[ok], s=6, color=color, alpha=0.25, linewidths=0)
    ys = smooth(np.where(ok, y, np.nan))
    ax.plot(x, ys, color=color, lw=1.8, label=f"{label} (smoothed)")
    return True


def _gradient_panel(ax, run, metric: str, *, positive=False) -> bool:
    drawn = False
    palette = colors(2)
    for (kind, label), color in zip(KINDS, palette, strict=True):
        x, y = gradient_series(run.steps, kind, metric, run.group)
        drawn |= _smoothed_points(ax, x, y, color, label, positive=positive, run=run)
    return drawn


def conflict_figure(runs: Sequence):
    """Cosine conflict and GDC over probed steps, raw vs EAGC-corrected, one column per run.

    When some setting has several seeds (the verdict's grouping), one column per setting
    instead: each kind's seed mean, smoothed, with its lowest-to-highest-seed band
    (:func:`seed_band`), so six runs of two settings read as two panels, not six.
    """
    groups = settings(runs)
    if any(len(g) > 1 for g in groups):
        return _setting_conflict_figure(groups)
    with style():
        fig, axes = new_figure(2, len(runs), sharey="row")
        for j, run in enumerate(runs):
            group = f" [{text(run.group)}]" if run.group else ""
            for i, (metric, ylabel, what) in enumerate(CONFLICT_ROWS):
                ax = axes[i, j]
                if _gradient_panel(ax, run, metric):
                    if metric == keys.COS:
                        ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
                    ax.legend(loc="best", fontsize="small")
                else:
                    no_data(ax, f"no {metric} recorded")
                ax.set_title(f"{text(run.name)}{group}: {what}", fontsize="medium")
                ax.set_xlabel(x_label(run))
                ax.set_ylabel(ylabel)
        suptitle(fig, f"Gradient conflict {_over(runs)}: raw vs EAGC-corrected")
        return fig


def _setting_conflict_figure(groups):
    """:func:`conflict_figure` with a column per setting (seed mean and band per kind)."""
    palette = colors(2)
    with style():
        fig, axes = new_figure(2, len(groups), sharey="row")
        for j, group in enumerate(groups):
            name = text(setting_label(group), 30)
            seeds = f" ({len(group)} seeds)" if len(group) > 1 else ""
            parts = {run.group for run in group}  # a setting's runs share their config
            seeds += f" [{text(parts.pop())}]" if len(parts) == 1 and group[0].group else ""
            for i, (metric, ylabel, what) in enumerate(CONFLICT_ROWS):
                ax = axes[i, j]
                for (kind, label), color in zip(KINDS, palette, strict=True):
                    series = []
                    for run in group:
                        x, y = gradient_series(run.steps, kind, metric, run.group)
                        series.append((x, smooth(y)))
                    _draw(ax, group, series, color, f"{label} (smoothed)")
                if ax.has_data():
                    if metric == keys.COS:
                        ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
                    ax.legend(loc="best", fontsize="small")
                else:
                    no_data(ax, f"no {metric} recorded")
                ax.set_title(f"{name}{seeds}: {what}", fontsize="medium")
                ax.set_xlabel("training step")
                ax.set_ylabel(ylabel)
        suptitle(
            fig,
            "Gradient conflict over training: raw vs EAGC-corrected, per setting (line: seed "
            "mean; band: lowest to highest seed)",
        )
        return fig


def training_figure(runs: Sequence):
    """Norm ratio, ProbeSet SOC and per-epoch accuracy, one column per run.

    When some setting has several seeds, one column per setting instead (seed mean and
    lowest-to-highest-seed band, as :func:`conflict_figure`).
    """
    groups = settings(runs)
    if any(len(g) > 1 for g in groups):
        return _setting_training_figure(groups)
    with style():
        fig, axes = new_figure(3, len(runs), sharey="row")
        acc_colors = colors(3)
        for j, run in enumerate(runs):
            name = text(run.name)
            ax = axes[0, j]
            drawn = _gradient_panel(ax, run, "norm_ratio", positive=True)
            _norm_ratio_axes(ax, drawn, name, x_label(run))

            ax = axes[1, j]
            x, soc = path_series(run.steps, keys.PROBESET, keys.SOC)
            ok = np.isfinite(soc)
            if ok.any():
                ax.plot(x[ok], soc[ok], marker="o", ms=3, lw=1.4, color=acc_colors[0])
            else:
                no_data(ax, "no ProbeSet SOC recorded")
            ax.set_title(f"{name}: ProbeSet SOC", fontsize="medium")
            ax.set_xlabel(x_label(run))
            ax.set_ylabel("ProbeSet SOC (0 to 1)")

            ax = axes[2, j]
            drawn = False
            for (key, field), color in zip(keys.ACC_KEYS.items(), acc_colors, strict=True):
                ep, acc = path_series(run.epochs, field, x_key=keys.EPOCH)
                ep = _accuracy_x(run, ep)
                ok = np.isfinite(acc)
                if ok.any():
                    ax.plot(ep[ok], acc[ok], marker="o", ms=3, color=color, label=key.title())
                    drawn = True
            _accuracy_axes(ax, drawn, name)
        suptitle(fig, f"Gradient norms, subspace overlap and accuracy {_over(runs)}")
        return fig


def _norm_ratio_axes(ax, drawn: bool, name: str, xlabel: str = "training step") -> None:
    """The norm-ratio panel's log scale, equal-norm line, legend and labels."""
    if drawn:
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.legend(loc="best", fontsize="small")
    else:
        no_data(ax, "no norm ratio recorded")
    ax.set_title(f"{name}: gradient norm ratio", fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("||g_U|| / ||g_S|| (log scale)")


def _accuracy_axes(ax, drawn: bool, name: str) -> None:
    """The accuracy panel's legend and labels."""
    if drawn:
        ax.legend(loc="best", fontsize="small", title="classes")
    else:
        no_data(ax, "no evaluations recorded")
    ax.set_title(f"{name}: clustering accuracy", fontsize="medium")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")


def _setting_training_figure(groups):
    """:func:`training_figure` with a column per setting (seed mean and band per series)."""

    palette, acc_colors = colors(2), colors(3)
    with style():
        fig, axes = new_figure(3, len(groups), sharey="row")
        for j, group in enumerate(groups):
            name = text(setting_label(group), 30)
            name += f" ({len(group)} seeds)" if len(group) > 1 else ""
            ax = axes[0, j]
            for (kind, label), color in zip(KINDS, palette, strict=True):
                series = []
                for run in group:
                    x, y = gradient_series(run.steps, kind, "norm_ratio", run.group)
                    series.append((x, smooth(np.where(y > 0, y, np.nan))))
                _draw(ax, group, series, color, f"{label} (smoothed)")
            _norm_ratio_axes(ax, ax.has_data(), name)
            ax = axes[1, j]
            soc = [path_series(run.steps, keys.PROBESET, keys.SOC) for run in group]
            _draw(ax, group, soc, acc_colors[0], None, marker="o")
            if not ax.has_data():
                no_data(ax, "no ProbeSet SOC recorded")
            ax.set_title(f"{name}: ProbeSet SOC", fontsize="medium")
            ax.set_xlabel("training step")
            ax.set_ylabel("ProbeSet SOC (0 to 1)")
            ax = axes[2, j]
            for (key, field), color in zip(keys.ACC_KEYS.items(), acc_colors, strict=True):
                accs = [path_series(run.epochs, field, x_key=keys.EPOCH) for run in group]
                _draw(ax, group, accs, color, key.title(), marker="o")
            _accuracy_axes(ax, ax.has_data(), name)
        suptitle(
            fig,
            "Gradient norms, subspace overlap and accuracy over training, per setting (line: "
            "seed mean; band: lowest to highest seed)",
        )
        return fig


def seed_band(series: Sequence[tuple[np.ndarray, np.ndarray]]):
    """``(x, mean, low, high)`` of one setting's seeds on the x values they all have.

    Args:
        series: ``(x [n_i], y [n_i])`` per seed (already smoothed).

    Returns:
        the common x (sorted), the mean over seeds, and the lowest and highest seed at each
        x (the band: every seed lies inside it); None when the seeds share no finite x.
    """
    common = None
    for x, y in series:
        ok = np.asarray(x)[np.isfinite(y)]
        common = ok if common is None else np.intersect1d(common, ok)
    if common is None or common.size == 0:
        return None
    rows = []
    for x, y in series:  # each seed's own value at each common x (no interpolation)
        x = np.asarray(x)
        finite = np.isfinite(y)
        xs, ys = x[finite], np.asarray(y)[finite]
        order = np.argsort(xs, kind="stable")
        rows.append(ys[order][np.searchsorted(xs[order], common)])
    stack = np.stack(rows)
    return common, stack.mean(axis=0), stack.min(axis=0), stack.max(axis=0)


def _draw(ax, group, series, color, label, ls="-", marker=None) -> None:
    """One run's line, or a setting's seed mean with its min-max band."""
    series = [(x, y) for x, y in series if np.isfinite(y).any()]
    if not series:
        return
    band = seed_band(series) if len(group) > 1 else None
    if band is None:  # one seed (or seeds on disjoint axes): each run its own line
        for x, y in series:
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color=color, ls=ls, lw=1.6, marker=marker, ms=3, label=label)
            label = None
        return
    x, mean, low, high = band
    ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0)
    ax.plot(x, mean, color=color, ls=ls, lw=1.8, marker=marker, ms=3, label=label)


def comparison_figure(runs: Sequence):
    """Smoothed raw (solid) and EAGC (dashed) cosine and GDC, and All accuracy, settings overlaid.

    Runs differing only in seed form one setting (the verdict's grouping): its seed mean is
    drawn with a band from the lowest to the highest seed; a setting with one run is its line.
    """

    groups = settings(runs)
    palette = colors(len(groups))
    with style():
        fig, axes = new_figure(1, 3)
        for group, color in zip(groups, palette, strict=True):
            name = text(setting_label(group), 30)
            if len(group) > 1:
                name += f" ({len(group)} seeds)"
            for k, metric in enumerate((keys.COS, keys.GDC)):
                for kind, ls in ((keys.RAW, "-"), (keys.EAGC, "--")):
                    series = []
                    for run in group:
                        x, y = gradient_series(run.steps, kind, metric, run.group)
                        series.append((x, curve(run, y)))
                    label = f"{name}, {'raw' if kind == keys.RAW else 'EAGC'}"
                    _draw(axes[0, k], group, series, color, label, ls=ls)
            accs = [path_series(run.epochs, keys.ACC_ALL, x_key=keys.EPOCH) for run in group]
            accs = [(_accuracy_x(run, ep), acc) for run, (ep, acc) in zip(group, accs, strict=True)]
            _draw(axes[0, 2], group, accs, color, name, marker="o")
        frozen = all(is_analysis(r) for r in runs)
        how = "per gradient batch" if frozen else "smoothed"
        steps = x_label(runs[0]) if frozen else "training step"
        epoch = "epoch (a checkpoint: the epoch its file records)"
        titles = (
            (f"cos(g_S, g_U), {how}", steps),
            (f"GDC, {how}", steps),
            ("All accuracy", epoch if any(is_analysis(r) for r in runs) else "epoch"),
        )
        for ax, (ylabel, xlabel) in zip(axes[0], titles, strict=True):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if ax.has_data():
                ax.legend(loc="best", fontsize="x-small")
            else:
                no_data(ax, "nothing recorded")
        axes[0, 0].axhline(0.0, color="0.3", lw=0.8, ls=":")
        seeded = any(len(g) > 1 for g in groups)
        per = "per setting" if seeded else "per run"
        axes[0, 0].set_title(f"Gradient cosine {per}", fontsize="medium")
        axes[0, 1].set_title(f"GDC {per}", fontsize="medium")
        axes[0, 2].set_title(f"All accuracy {per}", fontsize="medium")
        bands = "; band: lowest to highest seed" if seeded else ""
        suptitle(fig, f"Settings compared on shared axes (solid: raw, dashed: EAGC{bands})")
        return fig
