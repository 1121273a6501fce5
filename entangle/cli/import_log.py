"""``entangle import-log``: an existing run's log.txt or TensorBoard files as a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entangle.cli.app import app
from entangle.cli.common import console


@app.command("import-log")
def import_log_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="log.txt files of the SimGCD family / GCD stdout, TensorBoard event files, or "
            "folders holding them."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create.")],
    name: Annotated[
        str | None, typer.Option(help="Display name in reports (default: the --out folder).")
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            "--attach",
            help="An `entangle analyze` run of the folder's checkpoint (repeatable): its "
            "t-SNE features, energy and overlap join the evaluation of the checkpoint's epoch, "
            "so one report shows the logged curves and the checkpoint's diagnostics.",
        ),
    ] = None,
) -> None:
    """Turn an existing run's training log into a run directory that `entangle report` draws.

    Examples:

    
      entangle import-log exp/simgcd/log/cub_run --out runs/simgcd-cub
      entangle import-log run/log.txt run/events.out.tfevents.* --out runs/cub
      entangle analyze exp/cub/checkpoints/model.pt --data cub:/d/cub --out an
      entangle import-log exp/cub --out runs/cub --attach an/model
    """
    from entangle.logs import import_log

    result = import_log(files, out, name=name, attach=attach or ())
    # log lines are user text: printed literally (rich would turn ':train:' into an emoji)
    literal = {"markup": False, "emoji": False, "highlight": False, "soft_wrap": True}
    for note in result.notes:
        console.print(f"note: {note}", style="yellow", **literal)
    unknown = f", {result.unknown_lines} unknown lines" if "text" in result.kind else ""
    console.print(
        f"Imported {result.kind} log: {result.epochs} evaluations, "
        f"{result.steps} steps{unknown} -> {result.run_dir}",
        **literal,
    )
    for path, epoch in result.attached:
        console.print(f"attached {path} at epoch {epoch}", **literal)
    console.print(f"next: entangle report {result.run_dir}", **literal)
