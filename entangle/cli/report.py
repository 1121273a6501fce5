"""``entangle report``: build the HTML + PNG report of one or more run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from entangle.cli.app import app
from entangle.cli.common import console, stage_progress


@app.command("report")
def report(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories written by entangle (one or more).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (default reports/<first run's folder name>); an older entangle "
            "report there is replaced.",
        ),
    ] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write every figure as a PDF.")] = False,
    max_points: Annotated[
        int, typer.Option("--max-points", help="Cap on t-SNE points per run (by class).")
    ] = 20000,
    name: Annotated[
        list[str] | None,
        typer.Option("--name", help="Display name per run, in order (repeat the option)."),
    ] = None,
    tsne_backend: Annotated[
        str, typer.Option("--tsne-backend", help="auto, opentsne or sklearn.")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the t-SNE maps.")] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress bar (none either when stderr is not a terminal).",
        ),
    ] = False,
) -> None:
    """Write a self-contained HTML report (plus PNG figures) comparing the given runs.

    Examples:

    
      entangle report runs/baseline runs/eagc --out reports/compare
      entangle report runs/imported-simgcd runs/eagc --pdf
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report import build_report

    if out is None:
        out = Path("reports") / runs[0].resolve().name
    with stage_progress(quiet) as show:
        # the whole build has no count of its own: a pulsing bar with the elapsed time; the
        # t-SNE maps (seconds each, in worker processes) are counted
        show("report", 0, None, "figures and HTML")
        index = build_report(
            runs,
            out,
            pdf=pdf,
            tsne_max_points=max_points,
            tsne_backend=tsne_backend,
            seed=seed,
            names=name or None,
            on_map=lambda done, total: show("t-SNE maps", done, total, ""),
        )
        show("report", 1, 1, "done")
    n_png = len(list(index.parent.glob("*.png")))
    shown = escape(str(index))
    console.print(f"[green]Report written:[/] {shown} ({n_png} figures)", highlight=False)
