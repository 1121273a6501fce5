"""`entangle demo`: the whole story on the embedded digits data in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from entangle.cli.app import app
from entangle.cli.common import console, stage_progress


def summary_table(summaries: dict) -> Table:
    """Accuracy, conflict, GDC and SOC of each run as a rich table that fits 80 columns with the
    run names whole (light borders, two-line headers; the note below says what each is)."""
    table = Table(
        title="GCD on digits (old 0-4, novel 5-9): baselines from pretrained / reference "
        "weights, EAGC variants from the reference",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    width = max((len(name) for name in summaries), default=3)
    table.add_column("run", no_wrap=True, min_width=width)
    for col in (
        "All",
        "Old",
        "New",
        "mean\ncos",
        "cos<0\nrate",
        "GDC\n200",
        "GDC\nrun",
        "SOC\n200",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for name, s in summaries.items():
        table.add_row(
            escape(name),
            *(f"{s.get(k, float('nan')):.3f}" for k in ("acc_all", "acc_old", "acc_new")),
            f"{s.get('cos_mean', float('nan')):+.3f}",
            f"{s.get('conflict_rate', float('nan')):.2f}",
            f"{s.get('gdc_early', float('nan')):.3f}",
            f"{s.get('gdc_mean', float('nan')):.3f}",
            f"{s.get('soc_early', float('nan')):.3f}",
        )
    return table


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's runs and report.")] = Path(
        "reports/demo"
    ),
    device: Annotated[str, typer.Option(help="'auto' (CUDA when present), 'cpu', 'cuda:0'.")] = (
        "auto"
    ),
    seed: Annotated[int, typer.Option(help="Seed for split, pretraining and every run.")] = 0,
    epochs: Annotated[int, typer.Option(help="GCD training epochs per run.")] = 6,
    force: Annotated[bool, typer.Option(help="Replace an earlier demo's runs in --out.")] = False,
    report: Annotated[bool, typer.Option(help="Build the HTML/PNG report.")] = True,
    variants: Annotated[
        str,
        typer.Option(
            help="Runs, comma list (default: baseline, baseline-reference, eagc, aga, eep, "
            "eagc-fixed; e.g. 'baseline,eagc' for a shorter demo)."
        ),
    ] = "baseline,baseline-reference,eagc,aga,eep,eagc-fixed",
    aperture: Annotated[
        str,
        typer.Option(
            help="Conceptor aperture: a number, 'auto' or 'jaeger' (docs/calibration.md)."
        ),
    ] = "2.0",
) -> None:
    """Pretrain on digits, train the reference model, run both baselines and EAGC's variants.

    Examples:

    
      entangle demo
      entangle demo --variants baseline,eagc --out reports/quick
    """
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.demo import run_demo

    with stage_progress() as progress:
        result = run_demo(
            out,
            device=device,
            seed=seed,
            epochs=epochs,
            force=force,
            report=report,
            progress=progress,
            aperture=aperture,
            variants=[v.strip() for v in variants.split(",") if v.strip()],
        )
    console.print(summary_table(result["summaries"]))
    console.print(
        "All/Old/New: clustering accuracy after the last epoch; mean cos, cos<0 rate (the "
        "conflict rate) and GDC: raw gradients of the last block; '200': the first 200 training "
        "steps (the paper's window), 'run': the whole run; SOC: ProbeSet SOC."
    )
    if result["report"]:
        console.print(f"report: [bold]{escape(str(result['report']))}[/]", highlight=False)
    console.print(f"finished in {result['seconds']:.0f} s on {result['device']}")
