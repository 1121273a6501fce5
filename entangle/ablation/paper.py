"""``entangle ablate --paper simgcd-NAME``: the grid the EAGC paper ran on a benchmark.

Baseline (SimGCD), EAGC, AGA only and EEP only, seeds 0-2, every cell with the EAGC
authors' per-dataset script values (``--preset eagc``, :mod:`entangle.gcd.presets`) on the
benchmark's published split. The baseline keeps those values and switches the coordination
off, so the four cells differ only in EAGC's parts. ``simgcd-dinov2-NAME`` (cub, scars,
aircraft) is the same grid with ``--preset eagc-dinov2`` (DINOv2 ViT-B/14, registers).
"""

from __future__ import annotations

from entangle.ablation.spec import GridSpec, parse_grid
from entangle.errors import EntangleValueError
from entangle.gcd.presets import preset_values
from entangle.runs.directory import RunReader

PAPER_GRIDS = (
    "simgcd-cub",
    "simgcd-scars",
    "simgcd-aircraft",
    "simgcd-cifar100",
    "simgcd-imagenet100",
    "simgcd-dinov2-cub",
    "simgcd-dinov2-scars",
    "simgcd-dinov2-aircraft",
)
PAPER_VARIANTS = ("baseline", "eagc", "aga", "eep")
PAPER_SEEDS = (0, 1, 2)


def paper_grid(name: str, root: str, **base) -> GridSpec:
    """The grid of ``name`` (one of ``PAPER_GRIDS``) on the data under ``root``.

    Args:
        name: ``simgcd-<benchmark>``.
        root: the benchmark's root folder (``NAME:ROOT``).
        **base: further [base] settings (``pretrained``, ``device``, ...); they override.
    """
    if name not in PAPER_GRIDS:
        raise EntangleValueError(f"unknown paper grid {name!r}; valid: {', '.join(PAPER_GRIDS)}")
    dinov2 = name.startswith("simgcd-dinov2-")
    preset = "eagc-dinov2" if dinov2 else "eagc"
    data = f"{name.removeprefix('simgcd-').removeprefix('dinov2-')}:{root}"
    values = preset_values(preset, data)
    settings = {
        k: v
        for k, v in values.items()
        if k not in ("preset_source", "eagc")  # variant sets eagc
    }
    raw = {
        "base": {"data": data, "preset": preset, **settings, **base},
        "grid": {"variant": list(PAPER_VARIANTS), "seed": list(PAPER_SEEDS)},
    }
    return parse_grid(raw, source=f"--paper {name} ({values['preset_source']})")


# ---------------------------------------------------------------- the published numbers

# HaiyangZheng/EAGC README.md, "Results / SimGCD + EAGC", column "Paper (3 runs)": the
# paper's accuracies (%) All / Old / New, mean of 3 runs (no spread given)
PAPER_EAGC_ACCURACY = {
    "cub": (66.5, 71.0, 64.3),
    "scars": (62.9, 76.0, 56.6),
    "aircraft": (57.7, 60.4, 56.3),
    "cifar100": (83.1, 84.1, 81.0),
    "imagenet100": (83.5, 93.9, 78.3),
}
# CVMI-Lab/SimGCD README.md, "Results" ("three independent runs"): SimGCD's accuracies (%)
# All / Old / New as (mean, std); the EAGC README gives no baseline row for these datasets
SIMGCD_ACCURACY = {
    "cub": ((60.3, 0.1), (65.6, 0.9), (57.7, 0.4)),
    "scars": ((53.8, 2.2), (71.9, 1.7), (45.0, 2.4)),
    "aircraft": ((54.2, 1.9), (59.1, 1.2), (51.8, 2.3)),
    "cifar100": ((80.1, 0.9), (81.2, 0.4), (77.8, 2.0)),
    "imagenet100": ((83.0, 1.2), (93.1, 0.2), (77.9, 1.9)),
}
# HaiyangZheng/EAGC README.md, "Diagnose Results" ("average over the first 200 training
# steps", util/Diagnose/SimGCD.py and SimGCD_EAGC.py): (GDC, SOC), one run each
PAPER_DIAGNOSE = {
    "cub": {"baseline": (0.2669, 0.6478), "eagc": (0.1525, 0.4923)},
    "scars": {"baseline": (0.0909, 0.8110), "eagc": (0.0500, 0.6208)},
    "aircraft": {"baseline": (0.0935, 0.8643), "eagc": (0.0375, 0.7139)},
}
# HaiyangZheng/EAGC README.md, "DINOv2 Backbone Results", rows SimGCD: accuracies (%)
# All / Old / New of the baseline and of + EAGC (no run count or spread given)
PAPER_DINOV2_ACCURACY = {
    "cub": {"baseline": (71.5, 78.1, 68.3), "eagc": (77.9, 79.9, 76.9)},
    "scars": {"baseline": (71.5, 81.9, 66.6), "eagc": (81.5, 90.9, 76.9)},
    "aircraft": {"baseline": (63.9, 69.9, 60.9), "eagc": (74.6, 74.9, 74.4)},
}
PAPER_SOURCES = (
    "accuracies of EAGC: HaiyangZheng/EAGC README.md, Results / SimGCD + EAGC (paper column)",
    "accuracies of the baseline: CVMI-Lab/SimGCD README.md, Results (mean ± std of 3 runs)",
    "GDC / SOC: HaiyangZheng/EAGC README.md, Diagnose Results (first 200 training steps)",
)
# where entangle's numbers in the table are computed differently from the authors'
DEFINITION_NOTES = (
    "GDC: 1 - cos(g_S, g_S + g_U) on the last backbone block, as util/Diagnose/SimGCD.py's "
    "compute_gdc; for EAGC variants the authors' form (eagc_authors: the previous batch's "
    "EEP weights, this batch's AGA), for the baseline the raw gradients; mean over the "
    "probed steps among the first 200 training steps (the authors: every gdc_every-th step "
    "of the first 200).",
    "SOC: the same formula (k = soc_k), but on entangle's ProbeSet (a fixed subset of "
    "probeset_size samples every probeset_every steps), where the authors' compute_soc uses "
    "every labeled sample and every novel-class unlabeled sample after each step; the "
    "subset's SOC estimates theirs and is not identical.",
    "Accuracies: the last epoch's, on the unlabeled training set (SimGCD's README advises "
    "the last-epoch model); the paper's are means of 3 runs, the interval here is the "
    "95% t interval over this grid's seeds.",
    "AGA only / EEP only: no numbers in either README.",
)
EARLY_WINDOW = 200  # training steps, the Diagnose scripts' max_step


def paper_dataset(spec: GridSpec) -> str | None:
    """The benchmark of a ``--paper`` grid (``"cub"``, ``"dinov2-cub"``, ...), else None."""
    source = spec.source or ""
    for name in PAPER_GRIDS:
        if source.startswith(f"--paper {name} "):
            return name.removeprefix("simgcd-")
    return None


def authors_gdc(run_dir) -> float:
    """Mean last-block GDC over the run's probed steps < 200, as the authors compute it.

    ``eagc_authors`` where the run recorded it (EAGC variants), else ``raw``; NaN steps and
    a run without step records give NaN.
    """
    import math

    values = []
    for step in RunReader(run_dir).steps:
        if step.get("step", EARLY_WINDOW) >= EARLY_WINDOW:
            continue
        kind = "eagc_authors" if "eagc_authors" in step else "raw"
        gdc = ((step.get(kind) or {}).get("last_block") or {}).get("gdc")
        if isinstance(gdc, (int, float)) and math.isfinite(gdc):
            values.append(float(gdc))
    return sum(values) / len(values) if values else math.nan


def comparison_table(dataset: str, rows, run_dirs: dict) -> dict:
    """The "this run vs the paper" table of a paper grid.

    Args:
        dataset: the benchmark (``paper_dataset``; ``dinov2-NAME`` for the DINOv2 grids).
        rows: the grid's results rows (``entangle.ablation.results.cell_row``).
        run_dirs: cell name -> run directory (for the authors' GDC from step records).

    Returns:
        ``{"header": [...], "body": [[str, ...], ...], "sources", "notes"}``: per variant,
        each metric's published value beside this grid's seed mean [95% t interval] (n).
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.uncertainty import across_seeds

    def ours(values, scale, decimals):
        est = across_seeds(values)
        if est.n == 0:
            return "-"
        text = f"{est.value * scale:.{decimals}f}"
        if est.n > 1:
            text += f" [{est.low * scale:.{decimals}f}, {est.high * scale:.{decimals}f}]"
        return f"{text} (n={est.n})"

    header = ["variant", "seeds"]
    for metric in ("All", "Old", "New", "GDC", "SOC"):
        header += [f"{metric} paper", f"{metric} this run"]
    body = []
    for variant in PAPER_VARIANTS:
        done = [r for r in rows if r.get("variant") == variant and r.get("status") == "done"]
        cells = [variant, str(len(done))]
        published = _published_accuracy(dataset, variant)
        for i, key in enumerate(("acc_all", "acc_old", "acc_new")):
            cells += [published[i], ours([_num(r.get(key)) for r in done], 100.0, 1)]
        # the Diagnose runs are DINO ViT-B/16 ones: no DINOv2 GDC / SOC published
        diagnose = PAPER_DIAGNOSE.get(dataset, {}).get(variant)
        gdcs = [authors_gdc(run_dirs[r["cell"]]) for r in done if r["cell"] in run_dirs]
        cells += ["-" if diagnose is None else f"{diagnose[0]:.4f}", ours(gdcs, 1.0, 4)]
        cells += ["-" if diagnose is None else f"{diagnose[1]:.4f}"]
        cells += [ours([_num(r.get("soc")) for r in done], 1.0, 4)]
        body.append(cells)
    sources = PAPER_SOURCES
    if dataset.startswith("dinov2-"):
        sources = (
            "accuracies (baseline and EAGC): HaiyangZheng/EAGC README.md, DINOv2 Backbone "
            "Results (SimGCD rows); no GDC / SOC published for DINOv2",
        )
    return {"header": header, "body": body, "sources": sources, "notes": DEFINITION_NOTES}


def _published_accuracy(dataset: str, variant: str) -> list[str]:
    if dataset.startswith("dinov2-"):
        values = PAPER_DINOV2_ACCURACY.get(dataset.removeprefix("dinov2-"), {}).get(variant)
        return ["-", "-", "-"] if values is None else [f"{v:.1f}" for v in values]
    if variant == "eagc" and dataset in PAPER_EAGC_ACCURACY:
        return [f"{v:.1f}" for v in PAPER_EAGC_ACCURACY[dataset]]
    if variant == "baseline" and dataset in SIMGCD_ACCURACY:
        return [f"{m:.1f} ± {s:.1f}" for m, s in SIMGCD_ACCURACY[dataset]]
    return ["-", "-", "-"]


def _num(value) -> float:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)
