"""Render the report page with jinja2 (autoescape on: every user string is HTML-escaped)."""

from __future__ import annotations

import base64
import datetime as _dt
import math

from entangle.report.energy import IDENTITY_QUOTA, run_conceptor_note
from entangle.report.figures import RenderedFigure
from entangle.report.load import RunData
from entangle.report.summary import (
    format_delta,
    format_value,
    gradient_rows_note,
    summary_cell,
    summary_metrics,
)
from entangle.runs.records import accuracy_protocol, as_float, flatten_config, nan_reasons


def figure_context(fig: RenderedFigure) -> dict:
    """What the template needs of a figure: names, caption and the PNG as base64."""
    return {
        "name": fig.name,
        "title": fig.title,
        "caption": fig.caption,
        "data": base64.b64encode(fig.png).decode("ascii"),
    }


def now_text() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def run_details(run: RunData) -> dict:
    """Run-detail rows for the template (plain strings; the template escapes them)."""
    meta = run.meta
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    return {
        "name": run.name,
        "path": str(run.path),
        "complete": run.complete,
        "group": run.group,
        "device": str(meta.get("device") or "-"),
        "seed": str(meta.get("seed") if meta.get("seed") is not None else "-"),
        "start": run_start(run),
        "start_time": str(meta.get("start_time") or "-"),
        "git_sha": str(meta.get("git_sha") or "-"),
        "versions": [(str(k), str(v)) for k, v in versions.items()],
        "config": flatten_config(run.config),
        "nan_reasons": list(nan_reasons(run.steps).items()),
        "acc_protocol": accuracy_protocol(run.epochs),
    }


START_LABELS = {
    "pretrained": "pretrained",
    "reference": "reference model (warm start)",
}


def run_start(run: RunData) -> str:
    """The weights a run's backbone started from (run.json ``start``), as the report says it."""
    start = run.config.get("start")
    return START_LABELS.get(start, str(start)) if start else "-"


def start_row(runs: list[RunData]) -> dict:
    """The summary table's first row: where each run started (``-`` when not recorded)."""
    return {"label": "Initial backbone weights", "cells": [run_start(r) for r in runs]}


# an analysed checkpoint's words for the summary's training words (entangle analyze)
_FROZEN_WORDS = (
    ("first 200 training steps", "its gradient batches"),
    ("whole run", "all gradient batches"),
    ("Probed steps", "Gradient batches"),
    ("Steps with", "Gradient batches with"),
    ("Steps without", "Gradient batches without"),
    ("(best epoch)", "(the checkpoint)"),
    ("(last epoch)", "(the checkpoint)"),
    ("last evaluation", "the checkpoint"),
)


def frozen_label(label: str) -> str:
    """A summary row's label for analysed checkpoints: batches and checkpoints, not training."""
    for old, new in _FROZEN_WORDS:
        label = label.replace(old, new)
    return label


def summary_rows(summaries: list[dict], has_eagc: bool, frozen: bool = False) -> list[dict]:
    """Summary-table rows: one per metric, one formatted value per run (``frozen``: worded
    for analysed checkpoints, :func:`frozen_label`)."""
    name = frozen_label if frozen else str
    return [
        {"label": name(m.label), "cells": [summary_cell(s, m) for s in summaries]}
        for m in summary_metrics(has_eagc)
    ]


def _summary_context(runs: list[RunData], summaries: list[dict]) -> tuple[bool, list[str]]:
    """``(EAGC rows shown, the lines under the table saying why a run's rows are empty)``."""
    # an attached checkpoint's EAGC batch means are rows too (labelled in their cells)
    has_eagc = any(r.has_eagc for r in runs) or any(
        "gdc_all_eagc" in (s.get("checkpoint") or {}) for s in summaries
    )
    notes = [
        f"{r.name}: {note}"
        for r, s in zip(runs, summaries, strict=True)
        if (note := gradient_rows_note(s, r.config.get("source") == "import-log", len(runs) > 1))
    ]
    return has_eagc, notes


def delta_table(runs: list[RunData], summaries: list[dict], has_eagc: bool) -> dict:
    """Differences of every run to the first one, per summary metric.

    A reference run without EAGC has no corrected metrics: an EAGC run's corrected value is
    then compared with the reference's raw one (the gradient each optimiser applied), and the
    cell says so with ``(vs raw)``.
    """
    ref = runs[0].name
    frozen = all(getattr(r, "is_analysis", False) for r in runs)
    name = frozen_label if frozen else str
    header = ["Metric", f"{ref} (reference)"] + [f"{r.name} - {ref}" for r in runs[1:]]
    rows = []
    for m in summary_metrics(has_eagc):
        base = summaries[0].get(m.key)
        raw_key = m.key[: -len("_eagc")] + "_raw" if m.key.endswith("_eagc") else None
        fallback = raw_key is not None and math.isnan(as_float(base))
        cells = []
        for s in summaries[1:]:
            if fallback and not math.isnan(as_float(s.get(m.key))):
                delta = format_delta(s.get(m.key), summaries[0].get(raw_key), m.integer)
                cells.append(delta if delta == "-" else f"{delta} (vs raw)")
            else:
                cells.append(format_delta(s.get(m.key), base, m.integer))
        rows.append([name(m.label), format_value(base, m.integer)] + cells)
    return {"header": header, "rows": rows}


def environment():
    """A jinja2 environment over the packaged templates, escaping every substitution."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("entangle.report", "templates"),
        autoescape=True,  # also for strings: user names and configs go into every table
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _knn_table(runs, overlaps) -> dict:
    header = [
        "Run", "Epoch", "Samples in map", "new->old (features)", "old->new (features)",
        "new->old (map)", "old->new (map)", "new->old if mixed", "old->new if mixed",
    ]  # fmt: skip
    rows = []
    for run, o in zip(runs, overlaps, strict=True):
        if o is None or o.coords is None:
            rows.append([run.name, "-", "0", "-", "-", "-", "-", "-", "-"])
            continue
        f, m = o.knn_feature, o.knn_map
        shown = f"{o.n_shown} of {o.n_total}" if o.n_shown < o.n_total else str(o.n_total)
        rows.append(
            [run.name, str(o.epoch), shown]
            + [_num(f.get("new_to_old")), _num(f.get("old_to_new"))]
            + [_num(m.get("new_to_old")), _num(m.get("old_to_new"))]
            + [_num(f.get("new_to_old_chance")), _num(f.get("old_to_new_chance"))]
        )
    return {"header": header, "rows": rows}


def _verdict_context(verdict) -> dict | None:
    if verdict is None:
        return None
    return {
        "card": list(verdict.card),
        "glance": verdict.glance,
        "probeset": verdict.probeset,
        "frozen": verdict.frozen,
        "lines": list(verdict.lines),
        "table": {"header": ["Setting", "Quantity", "Value [95% interval] (method, n)"],
                  "rows": [list(r) for r in verdict.rows]},
    }  # fmt: skip


def _section(id_, heading, figures, intro="", notes=(), table=None) -> dict:
    return {
        "id": id_,
        "heading": heading,
        "intro": intro,
        # a figure that no run could have is a string saying so (build.py)
        "notes": list(notes) + [f for f in figures if isinstance(f, str)],
        "table": table,
        "figures": [figure_context(f) for f in figures if f is not None and not isinstance(f, str)],
    }


def render_html(runs, *, sections, summaries, energies, overlaps, verdict=None) -> str:
    """The complete ``index.html`` text.

    Args:
        runs: list of :class:`entangle.report.load.RunData`.
        sections: ``{"curves" | "energy" | "overlap" | "comparison": [RenderedFigure | str |
            None]}``; a string is the line that says why a figure was not drawn.
        summaries: one :func:`entangle.runs.summary.run_summary` dict per run.
        energies: run name -> list of :class:`entangle.report.energy.EpochEnergy`.
        overlaps: one :class:`entangle.report.plot_overlap.Overlap` (or None) per run.
        verdict: :class:`entangle.report.verdict.Verdict`, rendered first.
    """
    from entangle import __version__

    has_eagc, summary_notes = _summary_context(runs, summaries)
    frozen = all(getattr(r, "is_analysis", False) for r in runs)
    page = _page_sections(runs, sections, summaries, energies, overlaps, has_eagc, frozen)
    title = "entangle report: " + ", ".join(r.name for r in runs)
    return (
        environment()
        .get_template("report.html")
        .render(
            title=title,
            version=__version__,
            generated=now_text(),
            runs=[run_details(r) for r in runs],
            banners=_banners(runs),
            summary_rows=[start_row(runs)] + summary_rows(summaries, has_eagc, frozen),
            summary_notes=summary_notes,
            sections=page,
            verdict=_verdict_context(verdict),
        )
    )


def _energy_notes(runs: list[RunData], energies: dict) -> list[str]:
    """The energy section's notes: each run's conceptor, DDP rank-local rows, epoch notes."""
    energy_notes = [
        f"{r.name}: {run_conceptor_note(r.meta)}" for r in runs if run_conceptor_note(r.meta)
    ]
    for r in runs:
        local = next(
            (s["rank_local"] for s in r.steps if isinstance(s.get("rank_local"), dict)), None
        )
        if local:
            energy_notes.append(
                f"{r.name}: trained with DDP over {local.get('world_size')} processes; the "
                "feature-level and energy entries are of rank "
                f"{local.get('rank')}'s rows only (gradient metrics are global)"
            )
    energy_notes += [
        f"{name}, epoch {e.epoch}: {e.note}" for name, es in energies.items() for e in es if e.note
    ]
    return energy_notes


def _page_sections(runs, sections, summaries, energies, overlaps, has_eagc, frozen) -> list:
    """Sections 2-6 of the page (curves, energy, overlap, comparison, attribution), numbered."""
    overlap_notes = [
        f"{r.name}: {o.note}" for r, o in zip(runs, overlaps, strict=True) if o and o.note
    ]
    page = [
        _section(
            "curves",
            "2. Curves per gradient batch" if frozen else "2. Curves over training",
            sections["curves"],
        ),
        _section(
            "energy",
            "3. Energy",
            sections["energy"],
            intro=(
                "Two kinds of conceptor appear here, each named where it is used. The run's own "
                "(EEP's conceptor for EAGC runs, the starting model's for baselines) is fixed for "
                "the run and gives the step energies. The epoch distributions use a conceptor "
                "refitted on that epoch's labeled rows of the first and the last saved epoch "
                f"(aperture from the run; quota above {IDENTITY_QUOTA} flags a near-identity "
                "conceptor)."
            ),
            notes=_energy_notes(runs, energies),
        ),
        _section(
            "overlap",
            "4. Feature overlap",
            sections["overlap"],
            notes=overlap_notes,
            table=_knn_table(runs, overlaps),
        ),
    ]
    if len(runs) > 1:
        page.append(
            _section(
                "comparison",
                "5. Comparison",
                sections["comparison"],
                intro=(
                    "Every figure above shows the runs side by side (one column each, shared "
                    f"axes). The table gives each run's difference to {runs[0].name}."
                ),
                table=delta_table(runs, summaries, has_eagc),
            )
        )
    if any(f is not None and not isinstance(f, str) for f in sections.get("attribution", ())):
        page.append(
            _section(
                "attribution",
                f"{len(page) + 2}. Attribution: which samples make the conflict",
                sections["attribution"],
            )
        )
    return page


def _banners(runs: list[RunData]) -> list[dict]:
    """One warning banner per run that has warnings or did not finish."""
    return [
        {"name": r.name, "warnings": r.warnings or ["no DONE file: the run did not finish"]}
        for r in runs
        if r.warnings or not r.complete
    ]
