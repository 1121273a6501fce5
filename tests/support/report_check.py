"""Build a report and list what it could not show (test helper, no test logic)."""

from __future__ import annotations

from pathlib import Path

# every figure of a single-run report (comparison_curves needs two runs)
FIGURES = (
    "conflict_curves",
    "training_curves",
    "energy_ratio",
    "free_energy",
    "conceptor_spectrum",
    "eep_weight",
    "tsne_overlap",
)


def report_gaps(runs, out: Path, monkeypatch, extra_figures=()) -> list[str]:
    """Build the report of ``runs`` into ``out``; return every missing figure (``FIGURES``
    and ``extra_figures``) and every "no data" message a panel drew (an empty list: every
    section is filled)."""
    from entangle.report import build, plot_attribution, plot_curves, plot_energy, plot_overlap

    gaps: list[str] = []

    def record(ax, message):
        gaps.append(message)

    for module in (plot_curves, plot_energy, plot_overlap, plot_attribution):
        monkeypatch.setattr(module, "no_data", record)
    build.build_report(list(runs), out, tsne_backend="sklearn", tsne_max_points=300)
    wanted = (*FIGURES, *extra_figures)
    gaps += [f"missing figure {name}" for name in wanted if not (out / f"{name}.png").exists()]
    return gaps
