"""The verdict's answer card: four questions in at most ~6 lines, however many settings.

The card speaks of one comparison, the headline (full EAGC against its matching baseline,
else the runs themselves, :func:`entangle.report.verdict.headline`); every other setting
gets one shared line, with a mark where its interval excludes 0. Every number a line leaves
out is in the "at a glance" table and the detail table below the card (docs/records.md,
"verdict.json").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from entangle.report.uncertainty import WITHIN_RUN, Estimate
from entangle.report.verdict_detail import EEPDiagnosis

EXCLUDES = "*"  # marks a difference whose 95% interval excludes 0


@dataclass
class SettingFacts:
    """What the card needs of one setting (filled as the verdict is computed).

    ``versus`` maps verdict metric names (``acc_all_last``, ...) to the setting minus
    ``baseline``; ``change`` is the applied minus raw GDC of the same steps.
    """

    name: str
    n_runs: int
    window: str
    rate: Estimate | None = None
    gdc: Estimate | None = None
    change: Estimate | None = None
    coordination: str | None = None
    baseline: str | None = None
    versus: dict[str, Estimate] = field(default_factory=dict)
    eep: EEPDiagnosis | None = None
    # an analysed checkpoint (entangle analyze): batches of frozen weights, a computed
    # (never applied) correction, one evaluation instead of a last epoch
    frozen: bool = False


def _kind(est: Estimate, frozen: bool = False) -> str:
    unit = "gradient batches" if frozen else "steps"
    if est.method == WITHIN_RUN and not est.has_interval:
        return f"one run of {est.n} {unit}: too few for an interval"
    if est.method == WITHIN_RUN:
        return f"one run: within-run ({unit}) intervals, n = {est.n} {unit}"
    return f"95% t interval, {est.sides()}" if est.has_interval else est.sides()


def _mark(est: Estimate | None) -> str:
    if est is None or not est.has_interval:
        return ""
    return "" if est.low <= 0 <= est.high else EXCLUDES


def _spread(facts, get, fmt: str, names: bool = True) -> str:
    """``60%-72% (lowest eagc, highest eagc-fixed)``: ``get(fact)`` (an Estimate) across
    settings (``names=False``: without the parenthesis)."""
    have = [f for f in facts if get(f) is not None and not math.isnan(get(f).value)]
    if not have:
        return "n/a"
    lo = min(have, key=lambda f: get(f).value)
    hi = max(have, key=lambda f: get(f).value)
    lv, hv = get(lo).value, get(hi).value
    if fmt.format(lv) == fmt.format(hv):
        return fmt.format(lv)
    who = f" (lowest {lo.name}, highest {hi.name})" if names else ""
    return f"{fmt.format(lv)}-{fmt.format(hv)}{who}"


def _entanglement_line(probed: Sequence[SettingFacts], ref: SettingFacts) -> str:
    line = (
        f"(a) Entanglement, {ref.name}: the supervised and unsupervised gradients conflict "
        f"(cos < 0) on {ref.rate.short('{:.0%}')} of the {ref.window}; raw GDC "
        f"{ref.gdc.short()} ({_kind(ref.gdc, ref.frozen)})"
    )
    if len(probed) > 1:
        seeds = "seed means, " if any(f.n_runs > 1 for f in probed) else ""
        what = "checkpoints" if ref.frozen else "settings"
        line += (
            f". Across the {len(probed)} {what} ({seeds}same window): conflict rate "
            f"{_spread(probed, lambda f: f.rate, '{:.0%}')}, raw GDC "
            f"{_spread(probed, lambda f: f.gdc, '{:.3f}')}"
        )
    return line + "."


def _who(fact: SettingFacts) -> str:
    return "EAGC's correction" if fact.coordination == "eagc" else "the coordinator's update"


def _coordination_line(top: SettingFacts) -> str:
    change = top.change
    word = "lowers" if change.high < 0 else "raises" if change.low > 0 else "does not clearly move"
    line = (
        f"(b) Coordination, {top.name}: {_who(top)} {word} the GDC of the same steps, "
        f"applied - raw {change.short('{:+.3f}')} ({_kind(change)})"
    )
    if top.baseline is None:
        return line + "; no baseline run without EAGC to compare with."
    applied = top.versus.get("gdc_applied_first200")
    if applied is None or math.isnan(applied.value):
        return line + "."
    return line + f"; applied GDC vs {top.baseline}: {applied.verdict()}."


def compact(ests: Sequence[tuple[str, Estimate]], unit: str = "seeds") -> str:
    """``All +0.001, Old +0.000 (no interval: n = 1 vs 1 seeds)`` or, with intervals,
    ``All: no detectable difference, +0.004 [-0.010, +0.018]; ... (95% CI, n = 5 vs 5
    seeds)``; the sides are said once when all share them."""
    ests = [(name, e) for name, e in ests if not math.isnan(e.value)]
    if not ests:
        return ""
    sides = {e.sides(unit) for _, e in ests}
    shared = sides.pop() if len(sides) == 1 else None
    parts = []
    for name, e in ests:
        if not e.has_interval:
            text = f"{name} {e.short('{:+.3f}')}"
        elif e.low <= 0 <= e.high:
            text = f"{name}: no detectable difference, {e.short('{:+.3f}')}"
        else:
            word = "higher" if e.value > 0 else "lower"
            text = f"{name}: {word} by {e.short('{:+.3f}')}"
        parts.append(text if shared else f"{text} ({e.sides(unit)})")
    with_ci = any(e.has_interval for _, e in ests)
    sep = "; " if with_ci else ", "
    if shared is None:
        return sep.join(parts)
    if not with_ci:
        return sep.join(parts) + f" (no interval: {shared})"
    return sep.join(parts) + f" (95% CI of the seed means, {shared}; no detectable: CI holds 0)"


_ACC = (("All", "acc_all_last"), ("Old", "acc_old_last"), ("New", "acc_new_last"))


def _accuracy_line(fact: SettingFacts) -> str:
    text = compact([(g, fact.versus[k]) for g, k in _ACC if k in fact.versus])
    if not text:
        return ""
    return f"(c) Accuracy, last epoch, {fact.name} minus {fact.baseline}: {text}."


def _others_line(others: Sequence[SettingFacts]) -> str:
    """One line for every further setting: its GDC change and All accuracy vs its baseline."""
    bases = {f.baseline for f in others}
    vs = f" vs {bases.pop()}" if len(bases) == 1 else ""
    sides = {f.versus["acc_all_last"].sides() for f in others if "acc_all_last" in f.versus}
    items = []
    for f in others:
        part = f"{f.name}"
        if not vs and f.baseline:
            part += f" (vs {f.baseline})"
        bits = []
        if f.change is not None and not math.isnan(f.change.value):
            bits.append(f"GDC applied - raw {f.change.value:+.3f}{_mark(f.change)}")
        acc = f.versus.get("acc_all_last")
        if acc is not None and not math.isnan(acc.value):
            n = "" if len(sides) == 1 else f" ({acc.sides()})"
            bits.append(f"All {acc.value:+.3f}{_mark(acc)}{n}")
        items.append(part + (": " + ", ".join(bits) if bits else ""))
    notes = [f"{EXCLUDES} 95% interval excludes 0"]
    if len(sides) == 1:
        notes.append(f"accuracy: {sides.pop()}")
    return (
        f"(b, c) Other settings{vs}: " + "; ".join(items) + f" ({'; '.join(notes)}; "
        "intervals in the table below)."
    )


def _runs_line(compared: Sequence[SettingFacts]) -> str:
    """No headline comparison: the runs' (checkpoints') accuracies against the first."""
    parts = []
    unit = "checkpoints" if compared and compared[0].frozen else "seeds"
    for f in compared:
        text = compact([(g, f.versus[k]) for g, k in _ACC if k in f.versus], unit)
        if text:
            parts.append(f"{f.name}: {text}")
    if not parts:
        return ""
    when = "each checkpoint's own evaluation" if compared[0].frozen else "last epoch"
    return f"(c) Accuracy, {when}, minus {compared[0].baseline}: " + " | ".join(parts) + "."


def _correction_line(corrected: Sequence[SettingFacts]) -> str:
    """Analysed checkpoints: the correction computed on each one's batches, never applied."""
    parts = [
        f"{f.name} {f.change.short('{:+.3f}')}{_mark(f.change)}"
        for f in corrected
        if not math.isnan(f.change.value)
    ]
    if not parts:
        return ""
    mark = f"; {EXCLUDES} interval excludes 0" if corrected[0].change.has_interval else ""
    return (
        "(b) EAGC's correction, computed on the same gradient batches of each frozen "
        "checkpoint (not applied), corrected - raw GDC: "
        + "; ".join(parts)
        + f" ({_kind(corrected[0].change, True)}{mark})."
    )


def _eep_line(with_eep: Sequence[SettingFacts], top: SettingFacts | None) -> str:
    main = top if top is not None and top.eep is not None else with_eep[0]
    line = f"(d) EEP, {main.name}: {main.eep.short()}"
    rest = [f for f in with_eep if f is not main]
    if rest:
        inert = [f for f in rest if f.eep.inert]
        acts = [f for f in rest if not f.eep.inert]
        parts = []
        if inert:
            spread = _spread(inert, lambda f: f.eep.weight, "{:.3f}", names=False)
            if len(rest) == 1:
                parts.append(f"inert also in {inert[0].name} (mean weight {spread})")
            else:
                parts.append(
                    f"inert in {len(inert)} of the other {len(rest)} (mean weight {spread})"
                )
        if acts:
            parts.append(
                "acts in "
                + ", ".join(f"{f.name} (mean weight {f.eep.weight.value:.3f})" for f in acts)
            )
        line += "; " + "; ".join(parts)
    return line + "."


def answer_card(facts: Sequence[SettingFacts], top: SettingFacts | None) -> list[str]:
    """The card's lines: (a) entanglement, (b) coordination, (c) accuracy, (d) EEP.

    At most five lines plus one for every other setting together, whatever their number.
    """
    probed = [f for f in facts if f.rate is not None]
    if not probed:
        return ["No probed steps were recorded: nothing to conclude."]
    by_name = {f.name: f for f in facts}
    ref = by_name.get(top.baseline) if top is not None and top.baseline else None
    ref = ref if ref is not None and ref.rate is not None else probed[0]
    lines = [_entanglement_line(probed, ref)]
    if probed[0].frozen:
        lines.append(_correction_line([f for f in probed if f.change is not None]))
        lines.append(_runs_line([f for f in probed if f.versus]))
    elif top is not None:
        lines.append(_coordination_line(top))
        if top.baseline is not None:
            lines.append(_accuracy_line(top))
        others = [f for f in probed if f.change is not None and f is not top]
        if others:
            lines.append(_others_line(others))
    else:
        lines.append(_runs_line([f for f in probed if f.versus]))
    with_eep = [f for f in facts if f.eep is not None]
    if with_eep:
        lines.append(_eep_line(with_eep, top))
    return [line for line in lines if line]


def correction_of(run) -> str:
    """What an analysed checkpoint's EAGC correction is made of (entangle/analysis)."""
    cfg = run.config
    beta, aga = cfg.get("eep_weight"), cfg.get("aga_weight")
    if cfg.get("reference"):
        return (
            f"AGA (weight {aga}) and EEP (beta {beta}) with the conceptor and anchor of the "
            f"reference model {Path(str(cfg['reference'])).name}"
        )
    return (
        f"EEP only (beta {beta}), with the conceptor of the checkpoint's own labeled features: "
        "no --reference model was given, so no AGA"
    )


def compared_line(runs, batches: int, corrected) -> str:
    """What an ``entangle analyze`` report compares: checkpoints, their epochs, the batches.

    ``batches``: gradient batches per checkpoint; ``corrected``: the runs with EAGC's
    correction computed on them."""
    names = ", ".join(f"{r.name} ({r.epoch_label(None)})" for r in runs)
    cfg = runs[0].config
    same = len({(r.config.get("data"), r.config.get("seed"), r.config.get("batch_size"))
                for r in runs}) == 1  # fmt: skip
    data = f"{cfg.get('data')}, {cfg.get('n_samples')} samples"
    what = "checkpoint" if len(runs) == 1 else f"{len(runs)} checkpoints"
    line = f"Compared: {what}, {names}, " if len(runs) > 1 else f"Analysed: {names}, "
    line += (
        f"on the same data ({data}) and the same {batches} gradient batches of "
        f"{cfg.get('batch_size')} rows (seed {cfg.get('seed')}: same rows and views)"
        if same
        else "on differing data, seeds or batch sizes (see the run details)"
    )
    corrections = sorted({correction_of(r) for r in corrected})
    if corrections:
        line += (
            ". The weights are frozen (no optimiser step between batches), and EAGC's "
            "correction is computed on each batch, never applied (" + "; ".join(corrections) + ")"
        )
    return line + "."


def glance_table(facts: Sequence[SettingFacts]) -> dict:
    """One row per setting: the card's numbers with their intervals (below the card)."""
    header = [
        "Setting", "Runs", "Conflict rate", "Raw GDC", "GDC applied - raw (same steps)",
        "Compared with", "Applied GDC - that", "All acc. - that", "EEP",
    ]  # fmt: skip
    rows = []
    for f in facts:

        def cell(est, fmt="{:+.3f}"):
            return "-" if est is None or math.isnan(est.value) else est.short(fmt)

        eep = "-" if f.eep is None else ("inert" if f.eep.inert else "acts")
        if f.eep is not None:
            eep += f" (mean weight {f.eep.weight.value:.3f})"
        rows.append([
            f.name, str(f.n_runs), cell(f.rate, "{:.0%}"), cell(f.gdc, "{:.3f}"),
            cell(f.change), f.baseline or "-", cell(f.versus.get("gdc_applied_first200")),
            cell(f.versus.get("acc_all_last")), eep,
        ])  # fmt: skip
    return {"header": header, "rows": rows}
