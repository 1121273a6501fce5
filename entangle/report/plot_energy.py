"""Energy figures: per-group distributions early vs late, conceptor spectrum, EEP weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from entangle.report.energy import GROUP_LABELS, GROUPS, EpochEnergy, run_conceptor_of
from entangle.report.figures import colors, new_figure, no_data, style, suptitle, text
from entangle.report.load import epoch_label, is_analysis
from entangle.runs.keys import EEP_WEIGHT, ENERGY, ENERGY_RATIO
from entangle.runs.records import summary_series

ENERGY_KINDS = {
    "ratio": ("energy ratio z^T C z / ||z||^2", "Known-subspace energy ratio"),
    "free": ("free energy -logsumexp(logits / T)", "Logit free energy"),
}


def _bins(per_run: Mapping[str, Sequence[EpochEnergy]], kind: str) -> np.ndarray:
    """41 bin edges over the data's range (shared by all panels; ratios stay inside [0, 1]).

    Ratios of a small model often all lie in [0.8, 1]: a fixed [0, 1] axis hid their shape.
    """
    values = [
        v
        for energies in per_run.values()
        for e in energies
        for v in getattr(e, kind).values()
        if v.size
    ]
    if not values:
        return np.linspace(0.0, 1.0, 41)
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    if kind == "ratio":
        pad = 0.02 * (hi - lo)
        lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    return np.linspace(lo, hi, 41)


def _density(ax, values: np.ndarray, bins: np.ndarray, color, label: str, clip) -> None:
    """Density histogram (filled steps) and a Gaussian KDE line of ``values`` ``[n]``.

    Drawn with numpy and two matplotlib calls, not seaborn's ``histplot``: the 72 calls of the
    demo report's two energy figures took ~6 s in seaborn's data handling, not in drawing.
    """
    density, edges = np.histogram(values, bins=bins, density=True)
    ax.stairs(
        density, edges, fill=True, alpha=0.25, color=color, label=f"{label} (n={values.size})"
    )
    ax.stairs(density, edges, color=color, linewidth=1.0)
    # a KDE needs spread; a constant sample has no bandwidth
    if values.size >= 2 and float(np.ptp(values)) > 1e-9:
        grid, curve = _kde(values, clip)
        ax.plot(grid, curve, color=color, linewidth=1.5)


def _kde(values: np.ndarray, clip, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian KDE ``(grid [points], density [points])`` over the values' range (no tails past
    the data, as ``cut=0``), Scott's bandwidth std * n^(-1/5), the grid clipped to ``clip``."""
    lo, hi = float(values.min()), float(values.max())
    if clip[0] is not None:
        lo = max(lo, clip[0])
    if clip[1] is not None:
        hi = min(hi, clip[1])
    grid = np.linspace(lo, hi, points)
    bandwidth = float(values.std(ddof=1)) * values.size ** (-0.2)
    if not bandwidth > 0:
        return grid, np.zeros_like(grid)
    curve = np.zeros_like(grid)
    # chunks keep the [chunk, points] distance matrix small for large samples
    for start in range(0, values.size, 4096):
        z = (grid[None, :] - values[start : start + 4096, None]) / bandwidth
        curve += np.exp(-0.5 * z * z).sum(axis=0)
    return grid, curve / (values.size * bandwidth * np.sqrt(2 * np.pi))


def energy_figure(runs: Sequence, per_run: Mapping[str, Sequence[EpochEnergy]], kind: str):
    """Histogram + KDE of one energy (``"ratio"`` or ``"free"``) per sample group.

    Rows are the early and the late saved epoch, columns the runs (shared x axis).

    Args:
        runs: the report's runs (for names and order).
        per_run: run name -> ``[early, late]`` (or one) :class:`EpochEnergy`.
        kind: ``"ratio"`` or ``"free"``.
    """
    xlabel, title = ENERGY_KINDS[kind]
    n_rows = max((len(per_run.get(r.name, ())) for r in runs), default=1) or 1
    bins = _bins(per_run, kind)
    clip = (0.0, 1.0) if kind == "ratio" else (None, None)
    palette = colors(len(GROUPS))
    with style():
        fig, axes = new_figure(n_rows, len(runs), sharex=True)
        for j, run in enumerate(runs):
            energies = list(per_run.get(run.name, ()))
            # a run with one saved epoch (an analysed checkpoint) beside runs with two: its
            # epoch in the late row, no empty early panel above it
            rows = {n_rows - 1: energies[0]} if len(energies) == 1 else dict(enumerate(energies))
            for i in range(n_rows):
                ax = axes[i, j]
                if i not in rows:
                    if energies:
                        ax.set_visible(False)
                    else:
                        no_data(ax, "no saved features")
                    continue
                e = rows[i]
                # an analysed checkpoint has one saved set of features: no early/late
                stage = (
                    ""
                    if is_analysis(run)
                    else "only saved epoch, "
                    if len(energies) == 1 and n_rows > 1
                    else ("early, " if i == 0 and n_rows > 1 else "late, ")
                )
                values = getattr(e, kind)
                drawn = False
                for group, color in zip(GROUPS, palette, strict=True):
                    v = values.get(group, np.empty(0))
                    if v.size:
                        _density(ax, v, bins, color, GROUP_LABELS[group], clip)
                        drawn = True
                if drawn:
                    ax.legend(loc="best", fontsize="small")
                else:
                    no_data(ax, "not computable for this epoch")
                when = epoch_label(run, e.epoch)
                ax.set_title(f"{text(run.name)}: {stage}{when}", fontsize="medium")
                label = xlabel.replace("/ T", f"/ {e.temperature:g}") if kind == "free" else xlabel
                ax.set_xlabel(
                    f"{label}\n(axis fitted to the data: {bins[0]:.3g} to {bins[-1]:.3g})"
                )
                ax.set_ylabel("density")
        when = "" if all(is_analysis(r) for r in runs) else ", early vs late"
        suptitle(fig, f"{title}: labeled vs unlabeled old vs unlabeled new{when}")
        return fig


def _conceptor_label(entry: Mapping) -> str:
    name = "EEP's conceptor" if entry.get("name") == "eep" else "starting model's (fixed)"
    return f"{name}: quota {entry['quota']:.2f}, eff. rank {entry['effective_rank']:.1f}"


def spectrum_figure(runs: Sequence, per_run: Mapping[str, Sequence[EpochEnergy]]):
    """Eigenvalues per run of the run's own conceptor (EEP's for EAGC runs, the starting
    model's for baselines; run.json ``conceptor``), and of the epoch refits, each named."""
    with style():
        fig, axes = new_figure(1, len(runs), sharey=True)
        for j, run in enumerate(runs):
            ax = axes[0, j]
            drawn = False
            own = run_conceptor_of(run.meta)
            if own is not None:
                ev = np.asarray(own["eigenvalues"], dtype=np.float64)
                # thick and grey under the dashed refits, so it shows where they coincide
                ax.plot(
                    np.arange(1, ev.size + 1),
                    ev,
                    color="0.6",
                    lw=4.5,
                    zorder=1,
                    label=_conceptor_label(own),
                )
                drawn = True
            for e, color in zip(per_run.get(run.name, ()), colors(2), strict=False):
                if e.eigenvalues is None:
                    continue
                ev = e.eigenvalues
                whose = (
                    f"the {epoch_label(run, e.epoch)}'s"
                    if is_analysis(run)
                    else f"epoch {e.epoch}'s"
                )
                label = (
                    f"refit on {whose} labeled features: quota {e.quota:.2f}, "
                    f"eff. rank {e.effective_rank:.1f}"
                )
                ax.plot(
                    np.arange(1, ev.size + 1),
                    ev,
                    color=color,
                    lw=1.4,
                    ls="--",
                    zorder=2,
                    label=label,
                )
                drawn = True
            if drawn:
                ax.set_ylim(-0.02, 1.02)
                ax.legend(loc="upper right", fontsize="small")  # spectra fall from the top left
            else:
                no_data(ax, "no labeled features saved")
            ax.set_title(f"{text(run.name)}: conceptor spectrum", fontsize="medium")
            ax.set_xlabel("eigenvalue index (descending)")
            ax.set_ylabel("eigenvalue of C (0 to 1)")
        suptitle(fig, "Known-class conceptor spectra (all eigenvalues near 1 = degenerate)")
        return fig


def step_energy_figure(runs: Sequence):
    """Energy ratio per row group over training under the run's own fixed conceptor.

    The step records' ``energy.ratio``: EEP's conceptor for EAGC runs, the starting model's
    for baselines, so the runs' curves compare. Returns None when no run recorded them.
    """
    labels = GROUP_LABELS | {"unlabeled": "unlabeled"}
    series = []
    for run in runs:
        curves = {g: summary_series(run.steps, ENERGY, ENERGY_RATIO, g) for g in labels}
        if curves["unlabeled_old"][0].size:  # the finer split makes "unlabeled" redundant
            curves.pop("unlabeled")
        curves = {g: c for g, c in curves.items() if c[0].size}
        if curves:
            series.append((run, curves))
    if not series:
        return None
    with style():
        fig, axes = new_figure(1, len(series), sharey=True)
        for j, (run, curves) in enumerate(series):
            ax = axes[0, j]
            for (group, (x, stats)), color in zip(curves.items(), colors(4), strict=False):
                ax.plot(x, stats["q50"], color=color, lw=1.5, label=labels[group])
                ax.fill_between(x, stats["q25"], stats["q75"], color=color, alpha=0.15)
            name = _step_conceptor_name(run)
            ax.set_title(f"{text(run.name)}: under {name}", fontsize="medium")
            ax.set_xlabel("training step")
            ax.set_ylabel("energy ratio (median, quartiles)")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(loc="best", fontsize="small")
        suptitle(fig, "Energy ratio over training under each run's fixed conceptor")
        return fig


def _step_conceptor_name(run) -> str:
    names = {r.get(ENERGY, {}).get("conceptor") for r in run.steps if isinstance(r, Mapping)}
    names.discard(None)
    own = run_conceptor_of(run.meta)
    if not names and own is not None:  # records from before they named it: run.json does
        names = {own.get("name")}
    if names == {"eep"}:
        return "EEP's conceptor"
    if names == {"known_subspace"}:
        return "the starting model's conceptor"
    return "the probe's conceptor"


def eep_weight_figure(runs: Sequence):
    """EEP coefficient distribution over steps (median, quartile and decile bands).

    Returns:
        the figure, or None when no run recorded EEP weights.
    """
    series = [(run, *summary_series(run.steps, ENERGY, EEP_WEIGHT)) for run in runs]
    series = [s for s in series if s[1].size]
    if not series:
        return None
    color = colors(1)[0]
    with style():
        fig, axes = new_figure(1, len(series), sharey=True)
        for j, (run, x, stats) in enumerate(series):
            ax = axes[0, j]
            ax.fill_between(x, stats["q10"], stats["q90"], color=color, alpha=0.15, label="q10-q90")
            ax.fill_between(x, stats["q25"], stats["q75"], color=color, alpha=0.3, label="q25-q75")
            ax.plot(x, stats["q50"], color=color, lw=1.6, label="median")
            ax.plot(x, stats["mean"], color="0.2", lw=1.0, ls="--", label="mean")
            ax.legend(loc="best", fontsize="small")
            ax.set_title(f"{text(run.name)}: EEP weight w_i", fontsize="medium")
            ax.set_xlabel("training step")
            ax.set_ylabel("EEP coefficient (unlabeled rows)")
        suptitle(fig, "Energy-aware elastic projection: distribution of per-row weights")
        return fig
