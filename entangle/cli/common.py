"""Shared bits of the CLI: consoles and progress display."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


@contextmanager
def stage_progress():
    """A rich progress display and a ``report(stage, done, total, note)`` callback for it."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int, note: str = "") -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, note=note)
        progress.update(tasks[stage], completed=done, total=total, note=note)

    with progress:
        yield report
