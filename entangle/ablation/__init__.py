"""Ablation studies: a TOML grid of training settings, run resumably, aggregated over seeds.

    >>> from entangle.ablation import load_grid, run_grid  # doctest: +SKIP
    >>> result = run_grid(load_grid("grid.toml"), "reports/ablate/grid", workers=2)
    >>> result.files["summary"]  # results.csv, summary.md, report.html in the grid folder

The CLI is ``entangle ablate GRID.toml`` (``--example`` runs the shipped digits grid).
"""

from pathlib import Path

from entangle.ablation.cell import run_cell
from entangle.ablation.report import write_results
from entangle.ablation.results import Group, aggregate, collect, group_keys
from entangle.ablation.runner import CellOutcome, GridRun, run_grid
from entangle.ablation.spec import VARIANTS, Cell, GridSpec, cell_name, load_grid, parse_grid

__all__ = [
    "VARIANTS",
    "Cell",
    "CellOutcome",
    "GridRun",
    "GridSpec",
    "Group",
    "aggregate",
    "cell_name",
    "collect",
    "example_path",
    "group_keys",
    "load_grid",
    "parse_grid",
    "run_cell",
    "run_grid",
    "write_results",
]


def example_path(name: str = "digits") -> Path:
    """A shipped example grid: ``digits`` (EAGC's variants over five seeds, one weight sweep)
    or ``coordinators`` (EAGC against torchjd's PCGrad, CAGrad, UPGrad, MGDA; [mtl] extra)."""
    return Path(__file__).parent / "examples" / f"{name}.toml"
