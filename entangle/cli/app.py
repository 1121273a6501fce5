"""The ``entangle`` command: a thin typer front end over the public API.

Each sub-command lives in its own module and registers itself on ``app``; errors from
entangle (``EntangleError``) print one line without a traceback and exit with code 2.
"""

from __future__ import annotations

import shlex
import signal
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


# click's exception classes as typer ships them (vendored since typer 0.20, click's before)
try:
    from typer._click import exceptions as _click
except ImportError:  # pragma: no cover - an older typer runs on click itself
    from click import exceptions as _click

# click >= 8.2 raises it for no_args_is_help; before, the help was printed and Exit raised
_NO_ARGS_IS_HELP = getattr(_click, "NoArgsIsHelpError", ())


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like a kill that runs the ``finally`` blocks.

    A BaseException, so no ``except Exception`` of the code under way swallows it, and not a
    KeyboardInterrupt, which click would turn into "Aborted!" and exit code 1.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# commands whose unfinished output the same command line resumes (docs/reliability.md)
RESUMABLE = {
    "train": "the run is unfinished and resumable",
    "analyze": "the analysis is unfinished and resumable",
    "ablate": "the grid is unfinished and resumable",
}


def _on_signal(signum, frame) -> None:
    # a second signal during the clean-up ends the process at once (the default action);
    # every write is safe against that as against SIGKILL
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread (an embedding program): leave them alone
            pass
    return previous


def interrupted_line(signum: int, argv: list[str]) -> str:
    """The one line printed when a command is interrupted: what is left and how to go on."""
    command = next((a for a in argv if not a.startswith("-")), "")
    state = RESUMABLE.get(command, "nothing half-written was kept")
    again = "entangle " + shlex.join(argv)
    verb = "resume" if command in RESUMABLE else "start again"
    return f"interrupted by {signal.Signals(signum).name}: {state}; to {verb}, rerun: {again}"


def _tolerate_surrogates() -> None:
    """Print file names Python could not decode instead of crashing on them.

    Undecodable bytes of a file name (any name under ``LC_ALL=C PYTHONUTF8=0``; a Latin-1
    name under a UTF-8 locale) reach Python as lone surrogates, which a strict stdout refuses
    (UnicodeEncodeError): shown as escapes, as Python already does on stderr.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main() -> None:
    """Console-script entry point: run the app, turning EntangleError into exit code 2.

    SIGINT and SIGTERM end in one line saying how to resume, with the shell's exit code for
    the signal (128 + its number: 130, 143).
    """
    _tolerate_surrogates()
    previous = _install_signal_handlers()
    try:
        # standalone_mode=False: click hands its usage errors over instead of printing a
        # usage block, a blank line and the error (four lines); they become one line here
        code = app(standalone_mode=False)
        # as in standalone mode, every run ends in SystemExit (typer.Exit(n) returns n here)
        sys.exit(code if isinstance(code, int) else 0)
    except _NO_ARGS_IS_HELP as exc:  # `entangle`, `entangle export`: the help is wanted
        exc.show()
        sys.exit(exc.exit_code)
    except _click.ClickException as exc:
        line = exc.format_message().strip().replace("\n", " ")
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, _click.UsageError) and ctx is not None:
            line += f" (see {ctx.command_path} --help)"
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # an interrupted prompt (EOF on stdin)
        err_console.print("[bold red]error:[/] aborted", highlight=False)
        sys.exit(1)
    except EntangleError as exc:
        # the message carries user strings (paths with "[/]", say): never parse it as markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except Interrupted as stop:
        err_console.print(
            f"[bold red]error:[/] {escape(interrupted_line(stop.signum, sys.argv[1:]))}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(128 + stop.signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
