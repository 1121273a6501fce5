"""The verdict's detail (entangle.report.verdict): the EEP diagnosis and the class ranking.

Attribution ranks classes by the mean share of cos(g_S, g_U) per unlabeled row (a class with
twice the rows would otherwise weigh twice); the summed shares are shown beside it, and the
listed classes are marked as selected (the most negative of K), so their intervals are not
those of a class chosen in advance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from entangle.metrics.calibration import is_inert
from entangle.report.uncertainty import Estimate, across_seeds, within_run, within_run_rate
from entangle.runs.keys import ATTRIBUTION, ATTRIBUTION_EAGC, EAGC, EEP_WEIGHT, ENERGY, ENERGY_RATIO
from entangle.runs.records import as_float, dig, gradient_series
from entangle.runs.subsample import runs_subsample_words

SHARE = (0.0, 1.0)
GDC_RANGE = (0.0, 2.0)  # GDC = 1 - cos(g_S, g_S + g_U)


def _path(run, *keys):
    return np.array([as_float(dig(s, *keys)) for s in run.steps], dtype=np.float64)


def _gap(run, group="unlabeled"):
    lab = _path(run, ENERGY, ENERGY_RATIO, "labeled", "mean")
    return lab - _path(run, ENERGY, ENERGY_RATIO, group, "mean")


@dataclass(frozen=True)
class EEPDiagnosis:
    """Can EEP act: mean weight, share of rows acted on, energy gaps, the calibration record."""

    source: str
    weight: Estimate
    active: Estimate
    gap: Estimate
    gap_new: Estimate
    beta: float
    calibration: Mapping | None

    @property
    def inert(self) -> bool:
        return bool(is_inert(self.gap.value, self.weight.value, self.beta))

    def rows(self):
        s = self.source
        return [
            (f"EEP mean weight ({s})", self.weight, "{:.3f}"),
            (f"EEP share of unlabeled rows with w > 0.01 ({s})", self.active, "{:.0%}"),
            (f"energy gap labeled - unlabeled ({s})", self.gap, "{:.3f}"),
            (f"energy gap labeled - unlabeled-new ({s}, oracle)", self.gap_new, "{:.3f}"),
        ]

    def short(self) -> str:
        head = "inert, it barely reweights" if self.inert else "it acts"
        parts = [f"mean weight {self.weight.value:.3f} (beta {self.beta:g})"]
        if not math.isnan(self.active.value):
            parts.append(f"{self.active.value:.0%} of unlabeled rows above 0.01")
        parts.append(f"energy gap labeled - unlabeled {self.gap.value:.3f}")
        return f"{head} ({self.source}): " + ", ".join(parts)

    def as_json(self) -> dict:
        out = {
            "source": self.source,
            "inert": self.inert,
            "beta": self.beta,
            "mean_weight": self.weight.value,
            "share_active": self.active.value,
            "gap": self.gap.value,
            "gap_new_oracle": self.gap_new.value,
        }
        if isinstance(self.calibration, Mapping):
            out["recorded"] = dict(self.calibration)
        return out


def eep_diagnosis(group, estimate) -> EEPDiagnosis | None:
    """The diagnosis of one setting: during training (EAGC runs) or would-be (calibration)."""
    run = group[0]
    cal = run.meta.get("calibration") if isinstance(run.meta, Mapping) else None
    beta = as_float(run.config.get("eep_weight"))
    beta = 0.5 if math.isnan(beta) else beta
    if has(run, EAGC) and np.isfinite(_path(run, ENERGY, EEP_WEIGHT, "mean")).any():
        return EEPDiagnosis(
            "on the checkpoint's gradient batches" if run.is_analysis else "during training",
            estimate(group, lambda r: _path(r, ENERGY, EEP_WEIGHT, "mean")),
            estimate(group, lambda r: _path(r, ENERGY, EEP_WEIGHT, "frac_active"), SHARE),
            estimate(group, _gap),
            estimate(group, lambda r: _gap(r, "unlabeled_new")),
            beta,
            cal,
        )
    if isinstance(cal, Mapping) and isinstance(cal.get("at_aperture"), Mapping):
        at = cal["at_aperture"]
        n = int(cal.get("n_unlabeled") or 0)
        return EEPDiagnosis(
            "would-be, on the starting features",
            Estimate(as_float(at.get("mean_weight")), n=n),
            Estimate(as_float(at.get("share_active")), n=n),
            Estimate(as_float(at.get("gap")), n=n),
            Estimate(as_float(at.get("gap_new")), n=n),
            beta,
            cal,
        )
    return None


def eep_line(name: str, diag: EEPDiagnosis) -> str:
    """The detail sentence: the diagnosis with its numbers and what 'auto' would pick."""
    line = f"{name}: EEP: {diag.short()}"
    if not math.isnan(diag.gap_new.value):
        line += f", unlabeled-new gap (oracle) {diag.gap_new.value:.3f}"
    cal = diag.calibration
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
    return line + "."


# ----------------------------------------------------------------- class attribution


def class_matrix(run, kind: str = ATTRIBUTION, per_row: bool = False) -> tuple[np.ndarray, str]:
    """``[steps, K]`` per-class shares of cos(g_S, g_U) (unlabeled rows), and the id kind.

    ``per_row``: each share divided by the class's unlabeled rows in that step (NaN where the
    record has no row counts or the class has no row). The id kind is ``"class"`` (ground
    truth: oracle) when recorded, else ``"cluster"``.
    """
    for key in ("class", "cluster"):
        nodes = [dig(s, kind, "unsup_rows") for s in run.steps]
        nodes = [n for n in nodes if isinstance(n, Mapping) and isinstance(n.get(key), list)]
        nodes = [n for n in nodes if n[key]]
        if nodes:
            k = max(len(n[key]) for n in nodes)
            mat = np.full((len(nodes), k), np.nan)
            for i, node in enumerate(nodes):
                vals = np.array([as_float(v) for v in node[key]])
                if per_row:
                    rows = node.get(f"{key}_rows")
                    if not isinstance(rows, list) or len(rows) != vals.size:
                        continue
                    counts = np.array([as_float(v) for v in rows])
                    vals = np.where(counts > 0, vals / np.where(counts > 0, counts, 1), np.nan)
                mat[i, : vals.size] = vals
            return mat, key
    return np.zeros((0, 0)), ""


def has_row_counts(run, kind: str = ATTRIBUTION) -> bool:
    return bool(np.isfinite(class_matrix(run, kind, per_row=True)[0]).any())


def class_ranking(group, kind: str = ATTRIBUTION, estimate=None) -> list[tuple[int, Estimate]]:
    """Classes ordered from the most negative mean share per unlabeled row (pulls hardest).

    Falls back to the summed shares when the records carry no row counts (older records).
    """
    if estimate is None:
        estimate = setting_estimate
    per_row = all(has_row_counts(r, kind) for r in group)
    mats = [class_matrix(r, kind, per_row)[0] for r in group]
    if not mats or mats[0].size == 0:
        return []
    k = mats[0].shape[1]
    ests = [
        (c, estimate(group, lambda r, c=c: class_matrix(r, kind, per_row)[0][:, c]))
        for c in range(k)
    ]
    ests = [(c, e) for c, e in ests if not math.isnan(e.value)]
    return sorted(ests, key=lambda ce: ce[1].value)


def class_name(run, c: int, id_kind: str) -> str:
    names = run.config.get("class_names")
    if id_kind == "class" and isinstance(names, list) and c < len(names):
        return f"class {names[c]}"
    return f"{id_kind} {c}"


def attribution_lines(out, group, name) -> list[str]:
    """The ranking sentence (and its rows in ``out.rows``): selected top classes, per row."""
    run = group[0]
    ranking = class_ranking(group)
    if not ranking:
        return []
    per_row = all(has_row_counts(r) for r in group)
    unit = "mean share per unlabeled row" if per_row else "summed share (no row counts recorded)"
    id_kind = class_matrix(run)[1]
    oracle = " (oracle: ground-truth classes)" if id_kind == "class" else " (predicted clusters)"
    k = len(ranking)
    sums = {c: setting_estimate(group, lambda r, c=c: class_matrix(r)[0][:, c]).value
            for c, _ in ranking[:3]}  # fmt: skip
    for c, e in ranking[:3]:
        what = f"{unit} of cos from {class_name(run, c, id_kind)}{oracle}"
        out.rows.append((name, f"{what}, selected: one of the 3 most negative of {k}",
                         e.text("{:+.5f}")))  # fmt: skip
        if per_row:
            out.rows.append((name, f"summed share of cos from {class_name(run, c, id_kind)}",
                             f"{sums[c]:+.4f}"))  # fmt: skip
    against = [(c, e) for c, e in ranking if e.value < 0][:3]
    if not against:
        return [f"{name}: no class's unlabeled rows pull against the supervised direction on "
                f"average{oracle}."]  # fmt: skip
    listed = ", ".join(
        f"{class_name(run, c, id_kind)} {e.short('{:+.5f}')}"
        + (f" (sum {sums[c]:+.4f})" if per_row else "")
        for c, e in against
    )
    line = (
        f"{name}: classes whose unlabeled rows pull hardest against the supervised direction, "
        f"ranked by {unit}{oracle}; the {len(against)} listed were selected as the most negative "
        f"of {k}, so their intervals overstate how surely they lead: {listed}"
    )
    corrected = class_ranking(group, ATTRIBUTION_EAGC)
    if corrected:
        top, share = class_name(run, corrected[0][0], id_kind), corrected[0][1].value
        same = "the same" if corrected[0][0] == against[0][0] else "a different"
        line += (
            f"; after EAGC's correction (same steps, corrected gradient) the top one is {top} "
            f"({same} class, {share:+.5f})"
        )
    return [line + subsample_clause(group) + "."]


def subsample_clause(group) -> str:
    """``"; attribution over a subsample: 8 of 64 rows per attributed step ..."`` when a
    run of ``group`` attributed a row subsample (its shares cover those rows only), else ""."""
    # ", " between runs: "; " already separates the line's clauses
    words = runs_subsample_words(group, sep=", ")
    return f"; {words}, so the shares cover those rows only" if words else ""


def has(run, kind) -> bool:
    """True when ``run`` recorded gradient metrics of ``kind`` (raw, eagc, coordinated, ...)."""
    return bool(np.isfinite(gradient_series(run.steps, kind, "cos", run.group)[1]).any())


def _mean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def setting_estimate(group, series, bounds: tuple[float, float] | None = None) -> Estimate:
    """One setting's number: within-run (steps) for one run, a t interval across seeds else.

    ``bounds``: the range the quantity cannot leave (a share: ``(0, 1)``; GDC: ``(0, 2)``).
    One run's 0/1 series in [0, 1] (the conflict rate) gets the Wilson-type interval of
    :func:`entangle.report.uncertainty.within_run_rate`; every other interval is clipped to
    ``bounds`` (entangle.report.uncertainty says why that keeps its coverage).
    """
    if len(group) == 1:
        values = np.asarray(series(group[0]), dtype=np.float64)
        finite = values[np.isfinite(values)]
        binary = finite.size > 0 and bool(np.isin(finite, (0.0, 1.0)).all())
        if bounds == (0.0, 1.0) and binary:
            return within_run_rate(values)
        return within_run(values, bounds)
    return across_seeds([_mean(series(r)) for r in group], bounds)


# ----------------------------------------------------------------- ProbeSet SOC


def probeset_soc(run) -> dict | None:
    """What a run's ProbeSet SOC is: its subset, cadence, and offset from the full-set SOC.

    ``offsets`` are ProbeSet SOC minus the epoch record's SOC over all samples, at the steps
    where both use the same weights: a recipe run's ProbeSet at step s is evaluated before
    step s's update, its epoch record with ``step`` s after the update before it
    (docs/records.md). Runs of other loops are not paired (their epoch ``step`` may mean
    something else). None when the run recorded no ProbeSet SOC.
    """
    recs = [(s.get("step"), s["probeset"]) for s in run.steps
            if isinstance(s.get("probeset"), Mapping)
            and math.isfinite(as_float(s["probeset"].get("soc")))]  # fmt: skip
    if not recs:
        return None
    energy = recs[0][1].get(ENERGY)
    groups = ("labeled", "unlabeled_old", "unlabeled_new")
    counts = [as_float(dig(energy, g, "n")) for g in groups] if isinstance(energy, Mapping) else []
    rows = int(sum(counts)) if counts and all(math.isfinite(c) for c in counts) else None
    if rows is None and isinstance(run.config.get("probeset_size"), int):
        rows = run.config["probeset_size"]
    every = run.config.get("probeset_every")
    steps = [as_float(st) for st, _ in recs]
    if not isinstance(every, int):
        gaps = np.diff([x for x in steps if math.isfinite(x)])
        every = int(np.median(gaps)) if gaps.size else None
    offsets = []
    if isinstance(run.config.get("probeset_every"), int):
        full = {as_float(e.get("step")): as_float(e.get("soc")) for e in run.epochs}
        offsets = [as_float(p.get("soc")) - full[x] for x, (_, p) in zip(steps, recs, strict=True)
                   if x in full and math.isfinite(full[x])]  # fmt: skip
    early = sum(1 for x in steps if math.isfinite(x) and x < min(steps) + 200)
    return {"rows": rows, "every": every, "evaluations": len(recs), "early": early,
            "offsets": offsets}  # fmt: skip


def _span(values, fmt="{}") -> str:
    values = sorted(set(values))
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(values[0])}-{fmt.format(values[-1])}"


def probeset_note(runs) -> str | None:
    """One sentence for wherever ProbeSet SOC is shown: a subset estimate, and its offset.

    None when no run recorded a ProbeSet SOC.
    """
    facts = [(run, probeset_soc(run)) for run in runs]
    facts = [(run, f) for run, f in facts if f is not None]
    if not facts:
        return None
    rows = [f["rows"] for _, f in facts if f["rows"] is not None]
    every = [f["every"] for _, f in facts if f["every"] is not None]
    line = (
        "ProbeSet SOC is a subset estimate: "
        + (f"{_span(rows)} fixed rows" if rows else "a fixed set of rows")
        + " (labeled and unlabeled), evaluated every "
        + (f"{_span(every)} training steps" if every else "few training steps")
        + f" ({_span([f['evaluations'] for _, f in facts])} evaluations per run, "
        + f"{_span([f['early'] for _, f in facts])} in the first 200 training steps), "
        "not the SOC over the whole training set that the paper's diagnostic re-embeds"
    )
    offsets = [x for _, f in facts for x in f["offsets"]]
    paired = sum(1 for _, f in facts if f["offsets"])
    if offsets:
        line += (
            f". Where a ProbeSet evaluation has the same weights as an epoch's SOC over all "
            f"samples ({len(offsets)} pairs in {paired} of {len(facts)} runs), the subset reads "
            f"{np.mean(offsets):+.4f} against the full set (mean of subset - full; range "
            f"{min(offsets):+.4f} to {max(offsets):+.4f}): compare ProbeSet SOC with ProbeSet "
            "SOC, not with the full-set SOC row"
        )
    else:
        line += (
            ". No ProbeSet evaluation here has the same weights as an epoch's full-set SOC, "
            "so its offset is not measured in these runs (on the digits demo the subset read "
            "+0.0015 above the full set, docs/quantities.md)"
        )
    return line + "."
