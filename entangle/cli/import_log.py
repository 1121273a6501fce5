"""``entangle import-log``: an existing run's log.txt or TensorBoard files as a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entangle.cli.app import app
from entangle.cli.common import console, stage_progress
from entangle.errors import EntangleValueError

# log lines are user text: printed literally (rich would turn ':train:' into an emoji)
LITERAL = {"markup": False, "emoji": False, "highlight": False, "soft_wrap": True}


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
    analyze: Annotated[
        str | None,
        typer.Option(
            "--analyze",
            metavar="DATA",
            help="Also analyse each folder's checkpoints/model.pt on DATA (as `entangle "
            "analyze CKPT --data DATA --out OUT-analysis`, default settings) and attach it; "
            "other settings: run analyze yourself and --attach.",
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
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.logs import import_log

    attach = list(attach or ())
    if analyze is not None:
        attach += _analyze_checkpoints(files, out, analyze)
    result = import_log(files, out, name=name, attach=attach)
    literal = LITERAL
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


def _analyze_checkpoints(files: list[Path], out: Path, data: str) -> list[Path]:
    """``entangle analyze`` of each given folder's ``checkpoints/model.pt`` into OUT-analysis.

    Returns:
        the analysis run directories, to attach.
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.analysis import AnalyzeConfig

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.analysis import analyze as run_analyze

    # SimGCD's init_experiment saves the model as checkpoints/model.pt in the run folder
    found = sorted(
        {p.resolve() for f in files if f.is_dir() for p in f.rglob("checkpoints/model.pt")}
    )
    if not found:
        raise EntangleValueError(
            "--analyze: no checkpoints/model.pt in the given folders; analyse other files with "
            "entangle analyze CKPT --data DATA --out AN, then pass --attach AN/NAME"
        )
    target = out.parent / f"{out.name}-analysis"
    config = AnalyzeConfig(data=data, report=False)
    with stage_progress() as progress:
        result = run_analyze(found, target, config, progress=progress)
    console.print(f"analysed {len(found)} checkpoint(s) into {target}", **LITERAL)
    return [a.run_dir for a in result.analyses]
