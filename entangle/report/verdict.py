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
from entangle.report.uncertainty import Estimate, compare
from entangle.report.verdict_card import SettingFacts, answer_card, compared_line, glance_table
from entangle.report.verdict_detail import (
    GDC_RANGE,
    _mean,
    attribution_lines,
    eep_diagnosis,
    eep_line,
    has,
    probeset_note,
    setting_estimate,
)
from entangle.runs import keys
from entangle.runs.records import gradient_series, step_axis
from entangle.runs.summary import EARLY_STEPS, accuracy_summary
from entangle.runs.values import json_text

# config fields that do not define a setting: runs differing only here are seeds of one
_NOT_SETTING = ("seed", "device", "class_names")
WINDOW = f"first {EARLY_STEPS} training steps"


@dataclass
class Verdict:
    """The answer card, the detail sentences, the table behind them and the data (verdict.json).

    ``card`` is at most ~6 lines however many settings (entangle.report.verdict_card);
    ``rows`` are ``(setting, quantity, estimate text)``; ``comparisons``/``runs``/``calibration``
    are the JSON-ready facts documented in docs/records.md.
    """

    card: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    # the comparison the card speaks of, {"a": setting, "b": its baseline}, or None
    headline: dict | None = None
    # one row per setting (verdict_card.glance_table), shown below the card
    glance: dict = field(default_factory=dict)
    # what ProbeSet SOC is, said wherever it is shown (verdict_detail.probeset_note)
    probeset: str | None = None
    # every run an analysed checkpoint (entangle analyze): compared as they are, no seeds
    frozen: bool = False

    def as_json(self) -> dict:
        """``{"headline", "card", "comparisons", "runs", "calibration"}`` (NaN as null by the
        caller)."""
        return {
            "headline": self.headline,
            "card": self.card,
            "comparisons": self.comparisons,
            "runs": self.runs,
            "calibration": self.calibration,
        }


def verdict_json(verdict: Verdict) -> str:
    """verdict.json's text (docs/records.md): NaN and infinities written as null."""
    return json_text(verdict.as_json(), "verdict.json")


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
    """The setting named by its runs: ``a``, ``a, b``, ``baseline-s{0,1,2}`` (shared prefix), or
    for ablation cells (``variant=eagc__aga_weight=0.7__seed=0``) that differ only in their seed
    ``variant=eagc, aga_weight=0.7 (seeds 0,1,2)``."""
    import os

    names = [r.name for r in group]
    if len(names) == 1:
        return names[0]
    cells = _seed_cells(names)
    if cells is not None:
        return cells
    prefix = os.path.commonprefix(names)
    if prefix and all(len(n) > len(prefix) for n in names):
        return prefix + "{" + ",".join(n[len(prefix) :] for n in names) + "}"
    return ", ".join(names)


def _seed_cells(names: list[str]) -> str | None:
    """``k=v, k=v (seeds a,b)`` when every name is an ablation cell (``k=v`` parts joined by
    ``__``) and the cells differ in their ``seed`` part alone; else None."""
    cells = [dict(p.split("=", 1) for p in n.split("__")) for n in names if _is_cell(n)]
    if len(cells) != len(names) or any("seed" not in c for c in cells):
        return None
    shared = {k: v for k, v in cells[0].items() if k != "seed"}
    if any({k: v for k, v in c.items() if k != "seed"} != shared for c in cells):
        return None
    settings = ", ".join(f"{k}={v}" for k, v in shared.items())
    return f"{settings} (seeds {','.join(c['seed'] for c in cells)})"


def _is_cell(name: str) -> bool:
    return all(part.count("=") >= 1 and not part.startswith("=") for part in name.split("__"))


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
    """``first 200 training steps (90 probed)`` (a range when the seeds differ); for an
    analysed checkpoint ``4 gradient batches of the frozen checkpoint``."""
    counts = sorted({n_probed(r) for r in group})
    probed = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    if all(r.is_analysis for r in group):
        return f"{probed} gradient batches of the frozen checkpoint"
    return f"{WINDOW} ({probed} probed)"


def _gdc(run, kind=keys.RAW):
    return _early(run, gradient_series(run.steps, kind, keys.GDC, run.group)[1])


def _conflict(run):
    cos = _early(run, gradient_series(run.steps, keys.RAW, keys.COS, run.group)[1])
    return np.where(np.isnan(cos), np.nan, (cos < 0).astype(np.float64))


def coordinated(run) -> str | None:
    """The record kind of the run's applied update: ``eagc``, ``coordinated`` (a torchjd
    coordinator, docs/coordinators.md) or None (plain training)."""
    return next((k for k in keys.APPLIED_KINDS if has(run, k)), None)


def _applied(run):
    """The GDC of the gradient the optimiser applies: corrected/coordinated, else raw."""
    return _gdc(run, coordinated(run) or keys.RAW)


def _change(run):
    return _gdc(run, coordinated(run) or keys.RAW) - _gdc(run, keys.RAW)


def _acc(group_key):
    return lambda run: np.array([accuracy_summary(run.epochs)[f"acc_{group_key}_last"]])


# metric name -> (per-step series of one run, description, number format, range of a share)
METRICS = {
    "conflict_rate_first200": (
        _conflict,
        f"share of steps with cos < 0, {WINDOW}",
        "{:.0%}",
        (0.0, 1.0),
    ),
    "gdc_raw_first200": (lambda r: _gdc(r), f"raw GDC, {WINDOW}", "{:.3f}", GDC_RANGE),
    "gdc_applied_first200": (
        _applied,
        f"applied GDC (EAGC-corrected), {WINDOW}",
        "{:.3f}",
        GDC_RANGE,
    ),
    "acc_all_last": (_acc("all"), "All accuracy, last epoch", "{:.3f}", (0.0, 1.0)),
    "acc_old_last": (_acc("old"), "Old accuracy, last epoch", "{:.3f}", (0.0, 1.0)),
    "acc_new_last": (_acc("new"), "New accuracy, last epoch", "{:.3f}", (0.0, 1.0)),
}
_STEP_METRICS = ("conflict_rate_first200", "gdc_raw_first200", "gdc_applied_first200")


def difference(a: list[RunData], b: list[RunData], series, bounds=None) -> Estimate:
    """Seed mean of ``a`` minus seed mean of ``b`` (paired / Welch t, or no interval).

    ``bounds``: the range of the quantity itself; the difference is clipped to
    ``[low - high, high - low]`` of it (a share: [-1, 1]).
    """
    diff = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    return compare(
        {_seed(r): _mean(series(r)) for r in a}, {_seed(r): _mean(series(r)) for r in b}, diff
    )


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


def headline(treated: list[list[RunData]]) -> list[RunData] | None:
    """The setting the card is about: full EAGC (variant ``eagc``; AGA, EEP and the adaptive
    weights on) before any other coordination, then the one with most seeds, then the first."""
    if not treated:
        return None

    def score(item):
        i, group = item
        cfg = group[0].config
        full = cfg.get("variant") == "eagc" or (
            coordinated(group[0]) == "eagc"
            and all(cfg.get(k, True) is True for k in ("aga", "eep", "adaptive"))
        )
        return (full, coordinated(group[0]) == "eagc", len(group), -i)

    return max(enumerate(treated), key=score)[1]


def compute_verdict(runs: Sequence[RunData]) -> Verdict:
    """The answer card, every detail sentence and row, and verdict.json's facts."""
    out = Verdict()
    groups = settings(runs)
    probed = [g for g in groups if has(g[0], keys.RAW)]
    baselines = [g for g in probed if coordinated(g[0]) is None]
    treated = [g for g in probed if coordinated(g[0]) is not None]
    # analysed checkpoints: every one gets EAGC's correction computed on its batches, none is
    # a baseline; the checkpoints themselves are compared
    frozen = bool(runs) and all(r.is_analysis for r in runs)
    facts = {label(g): SettingFacts(label(g), len(g), window(g), coordination=coordinated(g[0]),
                                    frozen=frozen) for g in groups}  # fmt: skip
    for group in groups:
        _run_rows(out, group)
    for group in probed:
        _entanglement(out, facts[label(group)], group)
    for group in treated:
        base = None if frozen else matching_baseline(group, baselines)
        _coordination(out, facts[label(group)], group, base)
    if (frozen or not treated) and len(probed) >= 2:  # compare the runs themselves
        for other in probed[1:]:
            fact = facts[label(other)]
            fact.baseline = label(probed[0])
            fact.versus = _versus(out, other, probed[0])
    for group in groups:
        _eep(out, facts[label(group)], group)
        out.lines.extend(attribution_lines(out, group, label(group)))
    out.probeset = probeset_note(runs)
    if out.probeset:
        out.lines.append(out.probeset)
    top = None if frozen else headline(treated)
    top_facts = None if top is None else facts[label(top)]
    if top_facts is not None and top_facts.baseline is not None:
        out.headline = {"a": top_facts.name, "b": top_facts.baseline}
    out.card = answer_card(list(facts.values()), top_facts)
    out.frozen = frozen
    if frozen:
        batches = max(n_probed(r) for r in runs)
        out.card.insert(0, compared_line(runs, batches, [r for r in runs if coordinated(r)]))
    out.glance = glance_table(list(facts.values()))
    return out


def _add(out: Verdict, name: str, quantity: str, est: Estimate, fmt="{:.3f}", unit="seeds"):
    if not math.isnan(est.value):  # a row the run cannot have is left out, not "n/a"
        out.rows.append((name, quantity, est.text(fmt, unit)))


def _run_rows(out: Verdict, group: list[RunData]) -> None:
    for run in group:
        row = {"name": run.name, "setting": label(group), "seed": run.meta.get("seed"),
               "coordination": coordinated(run), "probed_first200": n_probed(run)}  # fmt: skip
        for metric, (series, _, _, bounds) in METRICS.items():
            row[metric] = _mean(series(run))
            if metric in _STEP_METRICS:
                est = setting_estimate([run], series, bounds)
                if est.has_interval:
                    row[f"{metric}_within_run"] = [est.low, est.high]
        out.runs.append(row)


def _entanglement(out, fact: SettingFacts, group):
    name, win = fact.name, fact.window
    fact.rate = setting_estimate(group, _conflict, (0.0, 1.0))
    fact.gdc = setting_estimate(group, lambda r: _gdc(r), GDC_RANGE)
    if math.isnan(fact.rate.value):
        fact.rate = None
        return
    _add(out, name, f"conflict rate, {win} (raw)", fact.rate, "{:.0%}")
    _add(out, name, f"raw GDC, {win}", fact.gdc)


def _coordination(out, fact: SettingFacts, group, baseline):
    name, win = fact.name, fact.window
    fact.change = setting_estimate(group, _change)
    what = "corrected" if coordinated(group[0]) == "eagc" else "applied update"
    _add(out, name, f"GDC {what} - raw, same steps, {win}", fact.change, "{:+.3f}")
    out.comparisons.append(
        _record(fact.change, f"{name} (applied)", f"{name} (raw)",
                "gdc_applied_minus_raw_first200", win)
    )  # fmt: skip
    if baseline is not None:
        fact.baseline = label(baseline)
        fact.versus = _versus(out, group, baseline)


def _versus(out, a, b) -> dict[str, Estimate]:
    """Every metric of setting ``a`` minus setting ``b``, into comparisons and rows."""
    results = {}
    for metric, (series, desc, _fmt, bounds) in METRICS.items():
        est = difference(a, b, series, bounds)
        results[metric] = est
        if math.isnan(est.value):
            continue
        frozen = all(r.is_analysis for r in a + b)
        last = "the checkpoint's evaluation" if frozen else "last epoch"
        win = window(a) if metric in _STEP_METRICS else last
        out.comparisons.append(_record(est, label(a), label(b), metric, win))
        if frozen:  # a checkpoint's batches and its computed (never applied) correction
            desc = desc.replace(WINDOW, window(a)).replace("last epoch", last)
            desc = desc.replace("applied GDC (EAGC-corrected)", "EAGC-corrected GDC (computed)")
        unit = "checkpoints" if frozen else "seeds"
        _add(out, label(a), f"{desc}: minus {label(b)}", est, "{:+.3f}", unit)
    return results


def _eep(out, fact: SettingFacts, group):
    diag = eep_diagnosis(group, setting_estimate)
    if diag is None:
        return
    fact.eep = diag
    out.calibration[fact.name] = diag.as_json()
    for quantity, est, fmt in diag.rows():
        _add(out, fact.name, quantity, est, fmt)
    out.lines.append(eep_line(fact.name, diag))
