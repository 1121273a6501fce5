"""The report's opening verdict, computed from the records (see docs/calibration.md, "verdict").

Four questions, each answered per setting with its uncertainty: runs that differ only in
their seed form one setting and are summarised across seeds; a setting with one run gets a
moving-block bootstrap over its probed steps (entangle.report.uncertainty).

1. conflict: share of the first 200 probed steps with cos(g_S, g_U) < 0, and their GDC;
2. EAGC: corrected minus raw GDC in the same run, and raw GDC / accuracy minus the baseline's;
3. EEP: the diagnosis (share of unlabeled rows acted on, mean weight, energy gap, quota),
   "inert" by :func:`entangle.metrics.calibration.is_inert`, and what ``auto`` would change;
4. attribution: the classes whose unlabeled rows pull most against the supervised direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from entangle.metrics.calibration import is_inert
from entangle.report.load import RunData
from entangle.report.records import as_float, dig, gradient_series, step_axis
from entangle.report.summary import EARLY_STEPS
from entangle.report.uncertainty import (
    Estimate,
    across_seeds,
    block_bootstrap,
    bootstrap_difference,
    seeds_difference,
)

# config fields that do not define a setting: runs differing only here are seeds of one
_NOT_SETTING = ("seed", "device", "class_names")


@dataclass
class Verdict:
    """Sentences (computed) and the table behind them: (setting, quantity, estimate text)."""

    lines: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)


def setting_key(run: RunData) -> str:
    """The run's settings without seed/placement, as a stable string."""
    cfg = {k: v for k, v in sorted(run.config.items()) if k not in _NOT_SETTING}
    return repr(cfg)


def settings(runs: Sequence[RunData]) -> list[list[RunData]]:
    """Runs grouped by setting, in first-seen order."""
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(setting_key(run), []).append(run)
    return list(groups.values())


def _label(group: list[RunData]) -> str:
    names = [r.name for r in group]
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} seeds)"


def _early(run: RunData, values: np.ndarray) -> np.ndarray:
    x = step_axis(run.steps)
    return values if x.size == 0 else values[x < x.min() + EARLY_STEPS]


def _estimate(group: list[RunData], series) -> Estimate:
    """One setting's number: bootstrap over one run's steps, or the mean across seeds."""
    if len(group) == 1:
        return block_bootstrap(series(group[0]))
    return across_seeds([float(np.nanmean(s)) if np.isfinite(s).any() else math.nan
                         for s in (series(r) for r in group)])  # fmt: skip


def _difference(a: list[RunData], b: list[RunData], series) -> Estimate:
    if len(a) > 1 and len(b) > 1:
        means = [[float(np.nanmean(series(r))) for r in g] for g in (a, b)]
        return seeds_difference(*means)
    return bootstrap_difference(series(a[0]), series(b[0]))


# ----------------------------------------------------------------- per-step series


def _cos(run, kind="raw"):
    return _early(run, gradient_series(run.steps, kind, "cos", run.group)[1])


def _conflict(run):
    cos = _cos(run)
    return np.where(np.isnan(cos), np.nan, (cos < 0).astype(np.float64))


def _gdc(run, kind="raw"):
    return _early(run, gradient_series(run.steps, kind, "gdc", run.group)[1])


def _gdc_change(run, kind="eagc"):
    return _gdc(run, kind) - _gdc(run, "raw")


def _path(run, *keys):
    return np.array([as_float(dig(s, *keys)) for s in run.steps], dtype=np.float64)


def _gap(run, group="unlabeled"):
    lab = _path(run, "energy", "ratio", "labeled", "mean")
    return lab - _path(run, "energy", "ratio", group, "mean")


def _last_acc(run):
    accs = [as_float(e.get("acc_all")) for e in run.epochs if isinstance(e, Mapping)]
    return np.array(accs[-1:] or [math.nan], dtype=np.float64)


def _has(run, kind):
    return np.isfinite(gradient_series(run.steps, kind, "cos", run.group)[1]).any()


def _coordinated(run) -> str | None:
    """The record kind of the run's applied update: ``eagc``, ``coordinated`` (a torchjd
    coordinator, docs/coordinators.md) or None (plain training)."""
    return next((k for k in ("eagc", "coordinated") if _has(run, k)), None)


# ----------------------------------------------------------------- the verdict


def compute_verdict(runs: Sequence[RunData]) -> Verdict:
    """Every sentence and row of the verdict section, from the runs' records."""
    out = Verdict()
    groups = settings(runs)
    # a baseline is a probed run without EAGC; an imported log has no GDC to compare with
    baselines = [g for g in groups if _has(g[0], "raw") and _coordinated(g[0]) is None]
    for group in groups:
        name = _label(group)
        _conflict_lines(out, group, name)
        kind = _coordinated(group[0])
        if kind is not None:
            _eagc_lines(out, group, name, baselines[0] if baselines else None, kind)
        _eep_lines(out, group, name)
        _attribution_lines(out, group, name)
    if not out.lines:
        out.lines.append("No probed steps were recorded: nothing to conclude.")
    return out


def _add(out: Verdict, name: str, quantity: str, est: Estimate, fmt="{:.3f}") -> str:
    text = est.text(fmt)
    if not math.isnan(est.value):  # a row the run cannot have is left out, not "n/a"
        out.rows.append((name, quantity, text))
    return text


def _conflict_lines(out, group, name):
    rate = _estimate(group, _conflict)
    if math.isnan(rate.value):
        return
    gdc = _estimate(group, _gdc)
    _add(out, name, f"conflict rate, first {EARLY_STEPS} steps (raw)", rate, "{:.0%}")
    _add(out, name, f"GDC, first {EARLY_STEPS} steps (raw)", gdc)
    strength = "strongly" if gdc.value > 0.5 else "moderately" if gdc.value > 0.2 else "weakly"
    out.lines.append(
        f"{name}: the supervised and unsupervised gradients conflict (cos < 0) on "
        f"{rate.short('{:.0%}')} of the first {EARLY_STEPS} probed steps; they deviate "
        f"{strength}: GDC {gdc.short()}. Intervals: {gdc.how()}."
    )


def _eagc_lines(out, group, name, baseline, kind="eagc"):
    change = _estimate(group, lambda run: _gdc_change(run, kind))
    what = "corrected" if kind == "eagc" else "applied update"
    _add(out, name, f"GDC {what} - raw, same steps", change, "{:+.3f}")
    word = (
        "lowers" if change.high < 0 else "raises" if change.low > 0 else "does not clearly change"
    )
    coordinator = "EAGC's correction" if kind == "eagc" else "the coordinator's update"
    out.lines.append(
        f"{name}: {coordinator} {word} the GDC of the same steps: {change.short('{:+.3f}')}."
    )
    if baseline is None:
        return
    base = _label(baseline)
    d_gdc = _difference(group, baseline, _gdc)
    d_acc = _difference(group, baseline, _last_acc)
    _add(out, name, f"raw GDC - {base}", d_gdc, "{:+.3f}")
    _add(out, name, f"last All accuracy - {base}", d_acc, "{:+.3f}")
    out.lines.append(
        f"{name} vs {base}: raw GDC differs by {d_gdc.short('{:+.3f}')}; last-epoch All "
        f"accuracy by {d_acc.short('{:+.3f}')}"
        + (" (one run each: no interval)." if d_acc.method == "single" else ".")
    )


def _eep_lines(out, group, name):
    run = group[0]
    cal = run.meta.get("calibration") if isinstance(run.meta, Mapping) else None
    beta = as_float(run.config.get("eep_weight"))
    beta = 0.5 if math.isnan(beta) else beta
    if _has(run, "eagc") and np.isfinite(_path(run, "energy", "eep_weight", "mean")).any():
        weight = _estimate(group, lambda r: _path(r, "energy", "eep_weight", "mean"))
        active = _estimate(group, lambda r: _path(r, "energy", "eep_weight", "frac_active"))
        gap = _estimate(group, _gap)
        gap_new = _estimate(group, lambda r: _gap(r, "unlabeled_new"))
        source = "during training"
    elif isinstance(cal, Mapping) and isinstance(cal.get("at_aperture"), Mapping):
        at = cal["at_aperture"]
        n = int(cal.get("n_unlabeled") or 0)
        weight, active = Estimate(at["mean_weight"], n=n), Estimate(at["share_active"], n=n)
        gap, gap_new = Estimate(at["gap"], n=n), Estimate(at.get("gap_new", math.nan), n=n)
        source = "would-be, on the starting features"
    else:
        return
    _add(out, name, f"EEP mean weight ({source})", weight)
    _add(out, name, f"EEP share of unlabeled rows with w > 0.01 ({source})", active, "{:.0%}")
    _add(out, name, f"energy gap labeled - unlabeled ({source})", gap)
    _add(out, name, f"energy gap labeled - unlabeled-new ({source}, oracle)", gap_new)
    inert = is_inert(gap.value, weight.value, beta)
    head = "EEP is inert on these features" if inert else "EEP acts on these features"
    line = (
        f"{name}: {head} ({source}): mean weight {weight.value:.3f} (beta {beta:g}), "
        f"{active.value:.0%} of unlabeled rows above 0.01, energy gap {gap.short()}, "
        f"unlabeled-new gap (oracle) {gap_new.value:.3f}"
    )
    if isinstance(cal, Mapping):
        at, auto = cal.get("at_aperture", {}), cal.get("at_auto", {})
        line += (
            f"; conceptor at aperture {as_float(cal.get('aperture')):.3g}: quota "
            f"{as_float(at.get('quota')):.3f}, effective rank "
            f"{as_float(at.get('effective_rank')):.1f}. 'auto' picks aperture "
            f"{as_float(cal.get('auto_aperture')):.3g}, where the starting gap would be "
            f"{as_float(auto.get('gap')):.3f} (unlabeled-new {as_float(auto.get('gap_new')):.3f}, "
            f"{as_float(auto.get('share_active')):.0%} rows acted on; at the run's aperture "
            f"{as_float(at.get('gap')):.3f})"
        )
    out.lines.append(line + ".")


def class_matrix(run: RunData, kind: str = "attribution") -> tuple[np.ndarray, str]:
    """``[steps, K]`` per-class shares of cos(g_S, g_U) (unlabeled rows), and the id kind.

    The id kind is ``"class"`` (ground truth: oracle) when recorded, else ``"cluster"``.
    """
    for key in ("class", "cluster"):
        rows = [dig(s, kind, "unsup_rows", key) for s in run.steps]
        rows = [r for r in rows if isinstance(r, list) and r]
        if rows:
            k = max(len(r) for r in rows)
            mat = np.full((len(rows), k), np.nan)
            for i, r in enumerate(rows):
                mat[i, : len(r)] = [as_float(v) for v in r]
            return mat, key
    return np.zeros((0, 0)), ""


def class_ranking(group: list[RunData], kind: str = "attribution") -> list[tuple[int, Estimate]]:
    """Classes (or clusters) ordered from the most negative mean share (pulls hardest)."""
    mats = [class_matrix(r, kind)[0] for r in group]
    if not mats or mats[0].size == 0:
        return []
    k = mats[0].shape[1]
    ests = [(c, _estimate(group, lambda r, c=c: class_matrix(r, kind)[0][:, c])) for c in range(k)]
    ests = [(c, e) for c, e in ests if not math.isnan(e.value)]
    return sorted(ests, key=lambda ce: ce[1].value)


def class_name(run: RunData, c: int, id_kind: str) -> str:
    names = run.config.get("class_names")
    if id_kind == "class" and isinstance(names, list) and c < len(names):
        return f"class {names[c]}"
    return f"{id_kind} {c}"


def _attribution_lines(out, group, name):
    run = group[0]
    ranking = class_ranking(group)
    if not ranking:
        return
    id_kind = class_matrix(run)[1]
    oracle = " (oracle: ground-truth classes)" if id_kind == "class" else " (predicted clusters)"
    against = [(c, e) for c, e in ranking if e.value < 0][:3]
    for c, e in ranking[:3]:
        _add(out, name, f"share of cos from {class_name(run, c, id_kind)}{oracle}", e, "{:+.4f}")
    if not against:
        out.lines.append(
            f"{name}: no class's unlabeled rows pull against the supervised direction on "
            f"average{oracle}."
        )
        return
    listed = ", ".join(f"{class_name(run, c, id_kind)} {e.short('{:+.4f}')}" for c, e in against)
    line = (
        f"{name}: share of cos(g_S, g_U) from the unlabeled rows of each class; pulling "
        f"hardest against the supervised direction{oracle}: {listed}"
    )
    corrected = class_ranking(group, "attribution_eagc")
    if corrected:
        top, share = class_name(run, corrected[0][0], id_kind), corrected[0][1].value
        same = "the same" if corrected[0][0] == against[0][0] else "a different"
        line += f"; with EAGC's correction the top one is {top} ({same} class, {share:+.4f})"
    out.lines.append(line + ".")
