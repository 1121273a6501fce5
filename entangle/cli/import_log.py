"""``entangle import-log``: an existing run's log.txt or TensorBoard files as a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
) -> None:
    """Turn an existing run's training log into a run directory that `entangle report` draws."""
    from entangle.logs import import_log

    result = import_log(files, out, name=name)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    unknown = f", {result.unknown_lines} unknown lines" if result.kind == "text" else ""
    console.print(
        f"[green]Imported[/] {result.kind} log: {result.epochs} evaluations, "
        f"{result.steps} steps{unknown} -> {escape(str(result.run_dir))}  "
        f"(entangle report {escape(str(result.run_dir))})",
        highlight=False,
        soft_wrap=True,
    )
