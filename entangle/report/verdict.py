"""The report's opening verdict, computed from the records (see docs/records.md, "verdict.json").

A setting is a group of runs that differ only in seed (:func:`settings`). Every comparison of
two settings is of their seed means (:func:`entangle.report.uncertainty.compare`: paired t with
matched seeds, Welch's t otherwise, no between-run interval with one run on a side). A setting
with one run gets only a within-run (steps) interval, named so.

The verdict answers four questions (the answer card), with the per-run detail below it:

1. is there entanglement: share of the first 200 training steps with cos(g_S, g_U) < 0, GDC;
2. does the coordination change it: applied (corrected) minus raw GDC of the same steps, and
   the applied GDC against the matching baseline's;
3. does accuracy move: last-epoch All/Old/New against the baseline;
4. can EEP act: the calibration diagnosis (:func:`entangle.metrics.calibration.is_inert`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from entangle.report.load import RunData
from entangle.report.uncertainty import Estimate, compare, within_run
from entangle.report.verdict_detail import (
    _mean,
    attribution_lines,
    eep_diagnosis,
    eep_line,
    has,
    setting_estimate,
)
from entangle.runs.records import gradient_series, step_axis
from entangle.runs.summary import EARLY_STEPS, accuracy_summary

# config fields that do not define a setting: runs differing only here are seeds of one
_NOT_SETTING = ("seed", "device", "class_names")
WINDOW = f"first {EARLY_STEPS} training steps"


@dataclass
class Verdict:
    """The answer card, the detail sentences, the table behind them and the data (verdict.json).

    ``rows`` are ``(setting, quantity, estimate text)``; ``comparisons``/``runs``/``calibration``
    are the JSON-ready facts documented in docs/records.md.
    """

    card: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        """``{"comparisons", "runs", "calibration"}`` (NaN written as null by the caller)."""
        return {"comparisons": self.comparisons, "runs": self.runs, "calibration": self.calibration}


def verdict_json(verdict: Verdict) -> str:
    """verdict.json's text (docs/records.md): NaN and infinities written as null."""
    import json

    from entangle.runs.io import to_jsonable

    return json.dumps(to_jsonable(verdict.as_json(), "verdict.json"), allow_nan=False, indent=2)


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


def label(group: list[RunData]) -> str:
    """The setting named by its runs: ``a``, ``a, b`` or ``baseline-s{0,1,2}`` (shared prefix)."""
    import os

    names = [r.name for r in group]
    if len(names) == 1:
        return names[0]
    prefix = os.path.commonprefix(names)
    if prefix and all(len(n) > len(prefix) for n in names):
        return prefix + "{" + ",".join(n[len(prefix) :] for n in names) + "}"
    return ", ".join(names)


def _seed(run: RunData):
    seed = run.meta.get("seed") if isinstance(run.meta, dict) else None
    return run.name if seed is None else seed  # unknown seed: never paired


# ----------------------------------------------------------------- per-run quantities


def _early(run: RunData, values: np.ndarray) -> np.ndarray:
    x = step_axis(run.steps)
    return values if x.size == 0 else values[x < x.min() + EARLY_STEPS]


def n_probed(run: RunData) -> int:
    """How many probe records fall in the first 200 training steps."""
    return int(_early(run, np.ones(len(run.steps))).size)


def window(group: list[RunData]) -> str:
    """``first 200 training steps (90 probed)`` (a range when the seeds differ)."""
    counts = sorted({n_probed(r) for r in group})
    probed = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{WINDOW} ({probed} probed)"


def _gdc(run, kind="raw"):
    return _early(run, gradient_series(run.steps, kind, "gdc", run.group)[1])


def _conflict(run):
    cos = _early(run, gradient_series(run.steps, "raw", "cos", run.group)[1])
    return np.where(np.isnan(cos), np.nan, (cos < 0).astype(np.float64))


def coordinated(run) -> str | None:
    """The record kind of the run's applied update: ``eagc``, ``coordinated`` (a torchjd
    coordinator, docs/coordinators.md) or None (plain training)."""
    return next((k for k in ("eagc", "coordinated") if has(run, k)), None)


def _applied(run):
    """The GDC of the gradient the optimiser applies: corrected/coordinated, else raw."""
    return _gdc(run, coordinated(run) or "raw")


def _change(run):
    return _gdc(run, coordinated(run) or "raw") - _gdc(run, "raw")


def _acc(group_key):
    return lambda run: np.array([accuracy_summary(run.epochs)[f"acc_{group_key}_last"]])


# metric name -> (per-step series of one run, description, number format)
METRICS = {
    "conflict_rate_first200": (_conflict, f"share of steps with cos < 0, {WINDOW}", "{:.0%}"),
    "gdc_raw_first200": (lambda r: _gdc(r), f"raw GDC, {WINDOW}", "{:.3f}"),
    "gdc_applied_first200": (_applied, f"applied GDC (EAGC-corrected), {WINDOW}", "{:.3f}"),
    "acc_all_last": (_acc("all"), "All accuracy, last epoch", "{:.3f}"),
    "acc_old_last": (_acc("old"), "Old accuracy, last epoch", "{:.3f}"),
    "acc_new_last": (_acc("new"), "New accuracy, last epoch", "{:.3f}"),
}
_STEP_METRICS = ("conflict_rate_first200", "gdc_raw_first200", "gdc_applied_first200")


def difference(a: list[RunData], b: list[RunData], series) -> Estimate:
    """Seed mean of ``a`` minus seed mean of ``b`` (paired / Welch t, or no interval)."""
    return compare({_seed(r): _mean(series(r)) for r in a}, {_seed(r): _mean(series(r)) for r in b})


def _record(est: Estimate, a: str, b: str, metric: str, win: str) -> dict:
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "difference": est.value,
        "low": est.low,
        "high": est.high,
        "n_a": est.n,
        "n_b": est.n_b if est.n_b else est.n,
        "method": est.method,
        "window": win,
    }


def matching_baseline(group, baselines):
    """The baseline setting whose config differs from ``group``'s in the fewest fields."""
    if not baselines:
        return None
    cfg = group[0].config

    def distance(b):
        other = b[0].config
        keys = (set(cfg) | set(other)) - set(_NOT_SETTING)
        return sum(cfg.get(k) != other.get(k) for k in keys)

    return min(baselines, key=distance)


# ----------------------------------------------------------------- the verdict


def compute_verdict(runs: Sequence[RunData]) -> Verdict:
    """The answer card, every detail sentence and row, and verdict.json's facts."""
    out = Verdict()
    groups = settings(runs)
    probed = [g for g in groups if has(g[0], "raw")]
    baselines = [g for g in probed if coordinated(g[0]) is None]
    treated = [g for g in probed if coordinated(g[0]) is not None]
    for group in groups:
        _run_rows(out, group)
    for group in probed:
        _entanglement(out, group)
    for group in treated:
        _coordination(out, group, matching_baseline(group, baselines))
    if not treated and len(probed) >= 2:  # no EAGC: compare the runs themselves
        for other in probed[1:]:
            _versus(out, probed[0], other, question="accuracy")
    for group in groups:
        _eep(out, group)
        out.lines.extend(attribution_lines(out, group, label(group)))
    if not out.card:
        out.card.append("No probed steps were recorded: nothing to conclude.")
    return out


def _add(out: Verdict, name: str, quantity: str, est: Estimate, fmt="{:.3f}") -> None:
    if not math.isnan(est.value):  # a row the run cannot have is left out, not "n/a"
        out.rows.append((name, quantity, est.text(fmt)))


def _run_rows(out: Verdict, group: list[RunData]) -> None:
    for run in group:
        row = {"name": run.name, "setting": label(group), "seed": run.meta.get("seed"),
               "coordination": coordinated(run), "probed_first200": n_probed(run)}  # fmt: skip
        for metric, (series, _, _) in METRICS.items():
            est = within_run(series(run)) if metric in _STEP_METRICS else None
            row[metric] = _mean(series(run))
            if est is not None and est.has_interval:
                row[f"{metric}_within_run"] = [est.low, est.high]
        out.runs.append(row)


def _entanglement(out, group):
    name, win = label(group), window(group)
    rate = setting_estimate(group, _conflict)
    gdc = setting_estimate(group, lambda r: _gdc(r))
    if math.isnan(rate.value):
        return
    _add(out, name, f"conflict rate, {win} (raw)", rate, "{:.0%}")
    _add(out, name, f"raw GDC, {win}", gdc)
    out.card.append(
        f"(a) Entanglement, {name}: the supervised and unsupervised gradients conflict "
        f"(cos < 0) on {rate.short('{:.0%}')} of the {win}; raw GDC {gdc.short()} "
        f"({_kind(gdc)})."
    )


def _kind(est: Estimate) -> str:
    if est.method == "within-run (steps)":
        return f"one run: within-run (steps) interval, n = {est.n} steps"
    return f"95% t interval, {est.sides()}" if est.has_interval else est.sides()


def _coordination(out, group, baseline):
    name, win = label(group), window(group)
    change = setting_estimate(group, _change)
    what = "corrected" if coordinated(group[0]) == "eagc" else "applied update"
    _add(out, name, f"GDC {what} - raw, same steps, {win}", change, "{:+.3f}")
    out.comparisons.append(
        _record(change, f"{name} (applied)", f"{name} (raw)", "gdc_applied_minus_raw_first200",
                win)
    )  # fmt: skip
    word = "lowers" if change.high < 0 else "raises" if change.low > 0 else "does not clearly move"
    who = "EAGC's correction" if coordinated(group[0]) == "eagc" else "the coordinator's update"
    line = (
        f"(b) Coordination, {name}: {who} {word} the GDC of the same steps "
        f"(applied - raw) by {change.short('{:+.3f}')} ({_kind(change)})"
    )
    if baseline is None:
        out.card.append(line + "; no baseline run without EAGC to compare with.")
        return
    d = _versus(out, group, baseline, question=None)
    out.card.append(
        f"{line}; applied GDC vs {label(baseline)}: {d['gdc_applied_first200'].verdict()}."
    )
    _accuracy_card(out, name, label(baseline), d)


def _versus(out, a, b, *, question) -> dict[str, Estimate]:
    """Every metric of setting ``a`` minus setting ``b``, into comparisons and rows."""
    results = {}
    for metric, (series, desc, _fmt) in METRICS.items():
        est = difference(a, b, series)
        results[metric] = est
        if math.isnan(est.value):
            continue
        win = window(a) if metric in _STEP_METRICS else "last epoch"
        out.comparisons.append(_record(est, label(a), label(b), metric, win))
        _add(out, label(a), f"{desc}: minus {label(b)}", est, "{:+.3f}")
    if question == "accuracy":
        _accuracy_card(out, label(a), label(b), results)
    return results


def _accuracy_card(out, a, b, d):
    parts = [f"{g} {d[f'acc_{g.lower()}_last'].verdict()}" for g in ("All", "Old", "New")
             if not math.isnan(d[f"acc_{g.lower()}_last"].value)]  # fmt: skip
    if parts:
        out.card.append(f"(c) Accuracy, last epoch, {a} minus {b}: " + "; ".join(parts) + ".")


def _eep(out, group):
    diag = eep_diagnosis(group, setting_estimate)
    if diag is None:
        return
    name = label(group)
    out.calibration[name] = diag.as_json()
    for quantity, est, fmt in diag.rows():
        _add(out, name, quantity, est, fmt)
    out.lines.append(eep_line(name, diag))
    out.card.append(f"(d) EEP, {name}: {diag.short()}.")
