"""The grid's HTML report (the table, bars per variant, sensitivity curves, step curves)
and the grid folder's outputs: results.csv, summary.md, report.html (:func:`write_results`).

One self-contained page (figures as base64 PNG, every user string HTML-escaped by the jinja2
template report/templates/ablation.html, the report's own HTML path). Plotting
libraries load inside the functions, through entangle.report's figure helpers (seaborn
style, colour-blind palette, Agg canvas without pyplot).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from entangle.ablation.cell import cells_dir
from entangle.ablation.paper import comparison_table, paper_dataset
from entangle.ablation.results import (
    Group,
    aggregate,
    collect,
    format_stat,
    group_keys,
    results_csv,
    summary_markdown,
    table,
)
from entangle.ablation.spec import Cell, GridSpec, format_value
from entangle.runs.directory import RunReader
from entangle.runs.io import atomic_text

# the per-step series: (record key, label); the applied GDC falls back to raw without EAGC
_STEP_SERIES = (
    (("eagc.last_block.gdc", "raw.last_block.gdc"), "GDC of the applied gradient"),
    (("raw.last_block.cos",), "raw cos(g_S, g_U)"),
)


def _label(settings: dict) -> str:
    parts = [format_value(settings.get("variant"))]
    parts += [f"{k}={format_value(v)}" for k, v in settings.items() if k != "variant"]
    return ", ".join(parts)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def bars_figure(groups: Sequence[Group]):
    """Grouped bars: All/Old/New accuracy and GDC/SOC per table row, std as error bars."""
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.figures import colors, new_figure, style, text

    panels = (
        (("acc_all", "All"), ("acc_old", "Old"), ("acc_new", "New")),
        (("gdc", "GDC"), ("gdc_raw", "GDC raw"), ("soc", "ProbeSet SOC")),
    )
    width = max(6.0, 0.55 * len(groups) * 3 / 2)
    with style():
        fig, axes = new_figure(1, 2, panel=(width, 3.8))
        x = np.arange(len(groups))
        for ax, metrics, ylabel in zip(axes[0], panels, ("accuracy", "value"), strict=True):
            w = 0.8 / len(metrics)
            for i, ((key, title), color) in enumerate(zip(metrics, colors(3), strict=True)):
                mean = np.array([g.stats[key][0] for g in groups])
                std = np.nan_to_num(np.array([g.stats[key][1] for g in groups]))
                ax.bar(x + (i - 1) * w, mean, w, yerr=std, label=title, color=color, capsize=2)
            ax.set_xticks(
                x,
                [text(_label(g.settings), 60) for g in groups],
                rotation=35,
                ha="right",
                fontsize="small",
            )
            ax.set_ylabel(ylabel)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes[0, 0].set_title("Clustering accuracy (mean ± std over seeds)")
        axes[0, 1].set_title("GDC and ProbeSet SOC, first 200 steps")
        return fig


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sensitivity_figure(groups: Sequence[Group], key: str):
    """All/New accuracy and GDC against one swept setting, one line per other setting.

    Returns None when no line has two or more values of ``key``.
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.figures import colors, new_figure, style, suptitle, text

    series: dict[str, list[Group]] = {}
    for g in groups:
        rest = {k: v for k, v in g.settings.items() if k != key}
        series.setdefault(_label(rest), []).append(g)
    lines = {k: v for k, v in series.items() if len({format_value(g.settings[key]) for g in v}) > 1}
    if not lines:
        return None
    baseline = [g for g in groups if g.settings.get("variant") == "baseline"]
    panels = (
        ("acc_all", "All accuracy"),
        ("acc_new", "New accuracy"),
        ("gdc", "GDC, first 200 steps"),
    )
    with style():
        fig, axes = new_figure(1, 3, panel=(4.4, 3.4))
        palette = colors(len(lines))
        for ax, (metric, title) in zip(axes[0], panels, strict=True):
            for (label, members), color in zip(lines.items(), palette, strict=True):
                members = sorted(members, key=lambda g: g.settings[key])
                xs = [g.settings[key] for g in members]
                mean = np.array([g.stats[metric][0] for g in members])
                std = np.nan_to_num(np.array([g.stats[metric][1] for g in members]))
                ax.errorbar(
                    xs, mean, yerr=std, marker="o", capsize=3, color=color, label=text(label, 50)
                )
            if baseline and math.isfinite(baseline[0].stats[metric][0]):
                ax.axhline(
                    baseline[0].stats[metric][0], color="0.4", ls="--", lw=1, label="baseline"
                )
            ax.set_xlabel(text(key))
            ax.set_title(title)
        axes[0, 0].legend(fontsize="small")
        suptitle(fig, f"Sensitivity to {text(key)} (mean ± std over seeds)")
        return fig


def _step_curve(run_dirs: Sequence[Path], keys: Sequence[str]):
    """Mean over runs of the first key with data, aligned on the step number."""
    per_step: dict[float, list[float]] = {}
    for path in run_dirs:
        reader = RunReader(path)
        steps = reader.column("step")
        for key in keys:
            values = reader.column(key)
            if np.isfinite(values).any():
                break
        for s, v in zip(steps, values, strict=True):
            per_step.setdefault(s, []).append(v)
    if not per_step:
        return np.array([]), np.array([])
    xs = np.array(sorted(per_step))
    with np.errstate(invalid="ignore"):
        ys = np.array(
            [np.nanmean(per_step[s]) if np.isfinite(per_step[s]).any() else np.nan for s in xs]
        )
    return xs, ys


def steps_figure(curves: dict[str, list[Path]]):
    """Per-step GDC and raw cosine of each variant overlaid (mean over seeds, smoothed)."""
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.figures import colors, new_figure, no_data, smooth, style, suptitle, text

    with style():
        fig, axes = new_figure(1, len(_STEP_SERIES), panel=(5.4, 3.6))
        palette = colors(max(1, len(curves)))
        for ax, (keys, title) in zip(axes[0], _STEP_SERIES, strict=True):
            drawn = False
            for (label, dirs), color in zip(curves.items(), palette, strict=False):
                xs, ys = _step_curve(dirs, keys)
                if xs.size and np.isfinite(ys).any():
                    ax.plot(xs, smooth(ys), color=color, lw=1.6, label=text(label, 50))
                    drawn = True
            if not drawn:
                no_data(ax, "no steps recorded")
            elif "cos" in keys[0]:
                ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
            ax.set_title(title)
            ax.set_xlabel("training step")
        if any(ax.get_legend_handles_labels()[0] for ax in axes[0]):
            axes[0, 0].legend(fontsize="small")
        suptitle(fig, "Per-step curves, last block (mean over seeds, smoothed)")
        return fig


def _variant_curves(groups: Sequence[Group], out: Path) -> dict[str, list[Path]]:
    """One group per variant (the one with most finished cells): its finished run dirs."""
    chosen: dict[str, Group] = {}
    for g in groups:
        v = format_value(g.settings.get("variant"))
        if len(g.seeds) > len(chosen[v].seeds if v in chosen else []):
            chosen[v] = g
    return {
        _label(g.settings): [cells_dir(out) / c for c in g.cells if c not in g.failed]
        for g in chosen.values()
    }


def ablation_report(
    spec: GridSpec,
    cells: Sequence[Cell],
    rows: Sequence[dict],
    groups: Sequence[Group],
    keys: Sequence[str],
    out,
    verdict=None,
) -> str:
    """The report page as a string (written to ``out/report.html`` by the caller).

    ``verdict``: the grid's :class:`entangle.report.verdict.Verdict` (:func:`grid_verdict`),
    shown first; None computes it here.

    Rendered from report/templates/ablation.html by the report's jinja2 environment (the
    one HTML path: autoescape on, so every user string is escaped by the template).
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.html import environment

    out = Path(out)
    header, body = table(groups, keys)
    figures = []
    done = [g for g in groups if g.seeds]
    if done:
        figures.append(("Accuracy, GDC and SOC per setting", bars_figure(done)))
        for key in keys[1:]:
            if _numeric([g.settings[key] for g in done]):
                fig = sensitivity_figure(done, key)
                if fig is not None:
                    figures.append((f"Sensitivity to {key}", fig))
        figures.append(
            ("Per-step curves of each variant", steps_figure(_variant_curves(done, out)))
        )
    dataset = paper_dataset(spec)
    paper = None
    if dataset is not None:  # --paper grids: the published numbers beside this grid's
        dirs = {r["cell"]: cells_dir(out) / r["cell"] for r in rows}
        paper = comparison_table(dataset, rows, dirs)
    return (
        environment()
        .get_template("ablation.html")
        .render(
            paper=paper,
            source=spec.source or "grid",
            finished=sum(r["status"] == "done" for r in rows),
            total=len(rows),
            # the verdict comes first: computed from the cells' records, seeds together
            verdict=_verdict_context(grid_verdict(groups, out) if verdict is None else verdict),
            header=header,
            body=body,
            n_keys=len(keys),
            figures=[{"title": title, "png": _png(fig)} for title, fig in figures],
            unfinished=[
                {"cell": r["cell"], "status": r["status"], "error": str(r.get("error") or "")}
                for r in rows
                if r["status"] != "done"
            ],
            base=[(str(k), format_value(v)) for k, v in spec.base.items()],
            cells_folder=str(out / "cells"),
            cell_rows=[
                (r["cell"], r["status"], format_stat((_f(r.get("acc_all")), math.nan, 1), 100, 1))
                for r in rows
            ],
        )
    )


def grid_verdict(groups: Sequence[Group], out: Path):
    """The report's verdict (entangle.report.verdict) over every finished cell, or None.

    Cells that differ only in seed are one setting, as in the grid's table.
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.load import load_runs

    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.verdict import compute_verdict

    dirs = [cells_dir(out) / c for g in groups for c in g.cells if c not in g.failed]
    dirs = [d for d in dirs if (d / "run.json").exists()]
    if not dirs:
        return None
    return compute_verdict(load_runs(dirs, [d.name for d in dirs]))


def _verdict_context(verdict) -> dict | None:
    if verdict is None:
        return None
    return {"card": verdict.card, "glance": verdict.glance, "lines": verdict.lines,
            "probeset": verdict.probeset}  # fmt: skip


def grid_verdict_json(verdict, spec: GridSpec, groups: Sequence[Group]) -> str:
    """verdict.json of a grid folder: the run report's schema plus ``grid`` (docs/records.md):
    each verdict setting with the grid values and cells it stands for."""
    import json

    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.verdict import verdict_json

    data = json.loads(verdict_json(verdict))
    of_cell = {c: g for g in groups for c in g.cells}
    settings = {}
    for run in data["runs"]:
        group = of_cell.get(run["name"])
        entry = settings.setdefault(run["setting"], {"setting": run["setting"], "cells": []})
        entry["cells"].append(run["name"])
        if group is not None:
            entry["values"] = {k: v for k, v in group.settings.items()}
    data["grid"] = {"source": spec.source, "settings": list(settings.values())}
    return json.dumps(data, allow_nan=False, indent=2)


def _f(value) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def write_results(
    spec: GridSpec, cells: Sequence[Cell], out, *, report: bool = True
) -> tuple[list[dict], dict[str, Path]]:
    """Write results.csv, summary.md (and report.html) into the grid folder ``out``.

    Returns:
        ``(rows, {"results": path, "summary": path[, "report": path]})``.
    """
    out = Path(out)
    rows = collect(cells, out)
    keys = group_keys(spec)
    groups = aggregate(rows, keys)
    files = {"results": out / "results.csv", "summary": out / "summary.md"}
    atomic_text(files["results"], results_csv(rows))
    atomic_text(files["summary"], summary_markdown(groups, keys, rows))
    if report:
        verdict = grid_verdict(groups, out)
        files["report"] = out / "report.html"
        page = ablation_report(spec, cells, rows, groups, keys, out, verdict=verdict)
        atomic_text(files["report"], page)
        if verdict is not None:  # the verdict's facts as data, beside the page
            files["verdict"] = out / "verdict.json"
            atomic_text(files["verdict"], grid_verdict_json(verdict, spec, groups))
    return rows, files
