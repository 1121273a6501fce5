"""Collect a grid's cells into rows, aggregate over seeds, results.csv and summary.md text.

Numbers come from each run's DONE summary (``entangle.gcd.train.run_summary``): last-epoch
accuracies; the last block's GDC and the ProbeSet SOC over the first 200 probed steps (the
paper's window, the headline) and over the whole run. ``gdc`` is the GDC of the gradient the
optimiser applied (EAGC-corrected for EAGC variants, the aggregate for gradient-level
coordinators), ``gdc_raw`` the one before the
correction. Keys: docs/records.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from entangle.ablation.cell import cells_dir
from entangle.ablation.spec import Cell, GridSpec, format_value
from entangle.runs import keys

# (key, column title, scale, decimals) of the paper-style table
TABLE_METRICS = (
    ("acc_all", "All", 100.0, 1),
    ("acc_old", "Old", 100.0, 1),
    ("acc_new", "New", 100.0, 1),
    ("gdc", "GDC (first 200 steps)", 1.0, 3),
    ("gdc_raw", "GDC raw (first 200 steps)", 1.0, 3),
    ("soc", "ProbeSet SOC (first 200 steps)", 1.0, 3),
    ("gdc_all", "GDC (whole run)", 1.0, 3),
    ("soc_all", "ProbeSet SOC (whole run)", 1.0, 3),
)
METRICS = (
    *("acc_all", "acc_old", "acc_new", "gdc", "gdc_raw", "soc", "gdc_all", "gdc_raw_all"),
    *("soc_all", "soc_last_epoch", "cos_mean", "conflict_rate"),
)


def _status(run_dir: Path) -> tuple[str, str | None]:
    if (run_dir / "DONE").is_file():
        return "done", None
    failed = run_dir / "FAILED"
    if failed.is_file():
        try:
            return "failed", json.loads(failed.read_text(encoding="utf-8")).get("error")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "failed", "FAILED file unreadable"
    return ("incomplete" if (run_dir / "run.json").is_file() else "pending"), None


def cell_row(cell: Cell, run_dir: Path) -> dict:
    """One results row: cell name, status, variant, swept settings, seed, metrics, error."""
    status, error = _status(run_dir)
    row = {"cell": cell.name, "status": status, "variant": cell.config.variant()}
    row |= {k: v for k, v in cell.settings.items() if k != "variant"}
    row["seed"] = cell.config.seed
    summary = {}
    if status == "done":
        summary = json.loads((run_dir / "DONE").read_text(encoding="utf-8")).get("summary") or {}
    for group, key in keys.ACC_KEYS.items():
        row[f"acc_{group}"] = summary.get(key)
    # the paper's window first; "_all" the whole run; the applied gradient is the corrected one
    # (a baseline has no applied keys: its raw GDC is the applied one)
    applied = keys.applied_kind(summary)
    early, whole = keys.done_gdc(keys.EARLY), keys.done_gdc(keys.MEAN)
    row["gdc"] = summary.get(keys.done_gdc(keys.EARLY, applied), summary.get(early))
    row["gdc_raw"] = summary.get(early)
    row["soc"] = summary.get(keys.SOC_EARLY)
    row["gdc_all"] = summary.get(keys.done_gdc(keys.MEAN, applied), summary.get(whole))
    row["gdc_raw_all"] = summary.get(whole)
    row["soc_all"] = summary.get(keys.SOC_ALL)
    row["soc_last_epoch"] = summary.get(keys.SOC_LAST_EPOCH)
    row["cos_mean"] = summary.get(keys.done_cos_mean())
    row["conflict_rate"] = summary.get(keys.CONFLICT_RATE)
    row["error"] = error
    return row


def group_keys(spec: GridSpec) -> list[str]:
    """Settings a table row stands for: ``variant`` and every swept key but ``seed``."""
    return ["variant"] + [k for k in spec.swept_keys() if k not in ("variant", "seed")]


@dataclass
class Group:
    """Cells that differ only in their seed.

    Attributes:
        settings: ``{key: value}`` of the group keys.
        cells: names of its cells; ``seeds``: seeds of its finished cells.
        stats: ``{metric: (mean, std, n)}`` over its finished cells, NaN values left out;
            std is the sample standard deviation (ddof=1), NaN for fewer than two values.
        failed: names of its failed or unfinished cells.
    """

    settings: dict
    cells: list[str] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _number(value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def aggregate(rows: Sequence[dict], keys: Sequence[str], metrics=METRICS) -> list[Group]:
    """Group rows by ``keys`` (in order of first appearance); mean +- std over each group.

    Args:
        rows: results rows (``cell_row`` or hand-made: ``status``, the keys, the metrics,
            ``seed``).
        keys: the settings that define a group (all but the seed).
        metrics: row keys to average.

    Returns:
        one :class:`Group` per distinct combination of ``keys`` values.
    """
    groups: dict[tuple, Group] = {}
    values: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
        ident = tuple(format_value(row.get(k)) for k in keys)
        group = groups.setdefault(ident, Group({k: row.get(k) for k in keys}))
        group.cells.append(row.get("cell"))
        if row.get("status") != "done":
            group.failed.append(row.get("cell"))
            continue
        group.seeds.append(row.get("seed"))
        for m in metrics:
            values.setdefault(ident, {}).setdefault(m, []).append(_number(row.get(m)))
    for ident, group in groups.items():
        for m in metrics:
            vals = np.asarray(values.get(ident, {}).get(m, []), dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            mean = float(vals.mean()) if vals.size else math.nan
            std = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
            group.stats[m] = (mean, std, int(vals.size))
    return list(groups.values())


def format_stat(stat: tuple, scale: float = 1.0, decimals: int = 3) -> str:
    """``mean ± std`` (just the mean for one value, ``-`` for none)."""
    mean, std, n = stat
    if n == 0 or not math.isfinite(mean):
        return "-"
    text = f"{mean * scale:.{decimals}f}"
    return text if n < 2 else f"{text} ± {std * scale:.{decimals}f}"


def table(groups: Sequence[Group], keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the paper-style table (plain strings, not escaped)."""
    header = [*keys, "seeds"] + [title for _, title, _, _ in TABLE_METRICS]
    body = []
    for g in groups:
        seeds = f"{len(g.seeds)}" + (f" ({len(g.failed)} missing)" if g.failed else "")
        cells = [format_value(g.settings[k]) for k in keys] + [seeds]
        for key, _, scale, dec in TABLE_METRICS:
            text = format_stat(g.stats[key], scale, dec)
            n = g.stats[key][2]
            # seeds whose value was NaN are left out of the mean: say so beside the number
            if 0 < n < len(g.seeds):
                text += f" (n={n})"
            cells.append(text)
        body.append(cells)
    return header, body


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def summary_markdown(groups: Sequence[Group], keys: Sequence[str], rows: Sequence[dict]) -> str:
    """The summary.md text: the table, what its columns mean, the failed cells."""
    header, body = table(groups, keys)
    lines = [
        "# Ablation summary",
        "",
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" if i < len(keys) else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in body]
    lines += [
        "",
        "All / Old / New: clustering accuracy (%) on the unlabeled set after the last epoch "
        "(one Hungarian mapping). GDC: mean of 1 - cos(g_S, g_S + g_U) on the last block over "
        "the probed steps of the first 200 training steps (the paper's window), of the applied "
        "gradient (EAGC-corrected for EAGC variants); GDC raw: before the correction. "
        "ProbeSet SOC: share of novel-feature energy in the top-k known subspace on the fixed "
        "probe set, mean over its evaluations in the first 200 steps. '(whole run)': the same "
        "means over every probed step. Values are mean ± sample std (ddof=1) over seeds.",
    ]
    bad = [r for r in rows if r["status"] != "done"]
    if bad:
        lines += ["", "## Cells not finished", ""]
        lines += [
            f"- `{_md_cell(r['cell'])}`: {r['status']}"
            + (f" — {_md_cell(str(r['error']))}" if r.get("error") else "")
            for r in bad
        ]
    return "\n".join(lines) + "\n"


def results_csv(rows: Sequence[dict]) -> str:
    """CSV text with one row per cell (columns: union of the rows' keys, in order)."""
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


# OWASP "CSV Injection": a cell starting with one of these is a formula to a spreadsheet
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell a spreadsheet shows as text: formula-like strings get a leading quote.

    Numbers (also negative ones) are written as numbers; only text is neutralised.
    """
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def collect(cells: Sequence[Cell], out) -> list[dict]:
    """Rows of every cell of the grid folder ``out``."""
    return [cell_row(cell, cells_dir(out) / cell.name) for cell in cells]
