"""The ``entangle`` command: a thin typer front end over the public API.

Each sub-command lives in its own module and registers itself on ``app``; errors from
entangle (``EntangleError``) print one line without a traceback and exit with code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from entangle.cli.common import err_console
from entangle.errors import EntangleError

app = typer.Typer(
    name="entangle",
    help="Diagnose gradient entanglement in GCD training and apply the EAGC correction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help texts are plain text: "[vit]" and "[base]" name extras and TOML tables, not markup
    rich_markup_mode=None,
)


def _register_commands() -> None:
    # importing each module runs its @app.command decorators
    import importlib

    commands = ("bench", "demo", "train", "report", "analyze", "ablate", "import_log", "export")
    for name in (*commands, "splits"):
        try:
            importlib.import_module(f"entangle.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"entangle.cli.{name}":
                raise


_register_commands()


def main() -> None:
    """Console-script entry point: run the app, turning EntangleError into exit code 2."""
    try:
        app()
    except EntangleError as exc:
        # the message carries user strings (paths with "[/]", say): never parse it as markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
