"""Shared bits of the CLI: consoles, progress display and ``--json`` output."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

# User text (paths, run and class names, echoed log lines) is printed literally: rich would turn
# "exp:smile:1" into an emoji and "__main__:train:111" into a train; emoji codes are never
# expanded, and every user string goes through `literal` (a table cell, a whole line) or
# `escape` (inside a message that has markup of its own).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def print_json(value, where: str, *, indent: int | None = 2) -> None:
    """Print ``value`` as JSON through entangle's one encoder (NaN/inf as null, valid JSON)."""
    # lazy: start-up time: the encoder's module loads torch (--help stays fast)
    from entangle.runs.values import json_text

    typer.echo(json_text(value, where, indent=indent))


def literal(text: object) -> Text:
    """``text`` as rich shows it verbatim: no markup, no emoji codes, no highlighting."""
    return Text(str(text))


__all__ = [
    "console",
    "err_console",
    "escape",
    "literal",
    "print_json",
    "progress_shown",
    "stage_progress",
]


class CountColumn(MofNCompleteColumn):
    """``done/total``; empty for a stage without a count (a pulsing bar with its time)."""

    def render(self, task) -> Text:
        return Text("") if task.total is None else super().render(task)


class EtaColumn(TimeRemainingColumn):
    """``eta H:MM:SS`` from rich's recent rate; empty for a stage without a count."""

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        return Text.assemble("eta ", super().render(task))


class RateColumn(ProgressColumn):
    """Steps per second over rich's recent window (``? it/s`` before the second update).

    A stage whose steps have a known number of images (its task field ``images_per_step``,
    training: the global batch) shows images per second instead.
    """

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        speed = task.finished_speed or task.speed
        if speed is None:  # finished at once (a cached stage) has no rate to show
            return Text("" if task.finished else "? it/s", style="progress.data.speed")
        images = task.fields.get("images_per_step") or 0
        if images > 0:
            return Text(f"{speed * images:,.0f} img/s", style="progress.data.speed")
        if speed < 1:  # a slow ViT step reads better as seconds per step
            return Text(f"{1 / speed:.1f} s/it", style="progress.data.speed")
        return Text(f"{speed:.1f} it/s", style="progress.data.speed")


def progress_shown(quiet: bool = False) -> bool:
    """Whether a live progress bar is drawn: stderr is a terminal and ``--quiet`` was not given.

    Piped or captured output (CI logs, ``2> file``) gets no bar: its redraws would fill the
    file with partial lines; the lines a command prints to stdout are unaffected.
    """
    return not quiet and err_console.is_terminal


class NoteColumn(ProgressColumn):
    """The stage's note (last loss, last accuracy), cut with an ellipsis, never wrapped."""

    def render(self, task) -> Text:
        return Text(str(task.fields.get("note", "")), no_wrap=True, overflow="ellipsis")


def progress_columns() -> tuple[ProgressColumn, ...]:
    """A stage bar's columns: stage, bar, count, rate, elapsed, ETA, note.

    Every column but the note is unwrappable, so on a narrow terminal (80 columns) rich
    shortens the bar and cuts the note instead of folding the counts and times onto a
    second line.
    """

    def whole() -> Column:
        return Column(no_wrap=True)

    return (
        TextColumn("[bold]{task.description}", table_column=whole()),
        BarColumn(bar_width=24),
        CountColumn(table_column=whole()),
        RateColumn(table_column=whole()),
        TimeElapsedColumn(table_column=whole()),
        EtaColumn(table_column=whole()),
        NoteColumn(),
    )


@contextmanager
def stage_progress(quiet: bool = False):
    """A rich progress display on stderr and a ``report(stage, done, total, note)`` callback.

    Each stage is one bar with its count, rate, elapsed time and ETA; nothing is drawn when
    :func:`progress_shown` is False (the callback still works, as a no-op display).
    """
    progress = Progress(
        *progress_columns(),
        console=err_console,
        transient=False,
        disable=not progress_shown(quiet),
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int, note: str = "", images_per_step: int = 0):
        if stage not in tasks:
            tasks[stage] = progress.add_task(
                stage, total=total, note=note, images_per_step=images_per_step
            )
        progress.update(tasks[stage], completed=done, total=total, note=note)

    shown = progress_shown(quiet)

    def print_line(*objects, **kwargs) -> None:
        """Print a stdout line; above the live bars while they share the terminal with it.

        rich consoles write past sys.stdout's live-display proxy, so a stdout line printed
        during a bar on the same terminal would land inside the bar's line.
        """
        target = progress.console if shown and console.is_terminal else console
        target.print(*objects, **kwargs)

    report.progress = progress
    report.shown = shown
    report.print = print_line
    with progress:
        yield report
