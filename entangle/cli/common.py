"""Shared bits of the CLI: consoles and progress display."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

# User text (paths, run and class names, echoed log lines) is printed literally: rich would turn
# "exp:smile:1" into an emoji and "__main__:train:111" into a train; emoji codes are never
# expanded, and every user string goes through `literal` (a table cell, a whole line) or
# `escape` (inside a message that has markup of its own).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def literal(text: object) -> Text:
    """``text`` as rich shows it verbatim: no markup, no emoji codes, no highlighting."""
    return Text(str(text))


__all__ = ["console", "err_console", "escape", "literal", "stage_progress"]


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
