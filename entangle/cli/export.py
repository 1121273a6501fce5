"""``entangle export tensorboard``: a run directory's records as TensorBoard event files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from entangle.cli.app import app
from entangle.cli.common import console
from entangle.errors import EntangleValueError

export_app = typer.Typer(
    help="Write run directories in other formats (TensorBoard).", no_args_is_help=True
)
app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def tensorboard(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories written by entangle (one or more).")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Log directory; each run goes to OUT/<run folder name>."),
    ] = Path("tensorboard"),
    histogram_every: Annotated[
        int, typer.Option("--histogram-every", help="Histograms every N step records.")
    ] = 10,
) -> None:
    """Write every probed scalar and evaluation record of RUNS as TensorBoard events (needs
    the [tb] extra); view with `tensorboard --logdir OUT`.

    Examples:

    
      entangle export tensorboard runs/eagc --out tb/
      tensorboard --logdir tb/
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.logs.tensorboard_out import export_run

    names = [run.resolve().name for run in runs]
    if len(set(names)) != len(names):
        raise EntangleValueError(
            f"runs share a folder name ({', '.join(names)}); export them one at a time with "
            "different --out directories"
        )
    for run, name in zip(runs, names, strict=True):
        counts = export_run(run, out / name, histogram_every=histogram_every)
        console.print(
            f"[green]{escape(str(run))}[/] -> {escape(str(out / name))}: {counts['steps']} "
            f"steps, {counts['epochs']} "
            f"evaluations, {counts['histogram_epochs']} feature epochs as histograms",
            highlight=False,
        )
