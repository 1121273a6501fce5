"""`entangle ablate`: run a grid of training settings, resumably, and write the ablation table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from entangle.cli.app import app
from entangle.cli.common import console, stage_progress
from entangle.errors import EntangleValueError


def cells_table(cells, keys) -> Table:
    """The cells of a grid as a rich table (the dry run's output)."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.ablation.spec import format_value

    table = Table(title=f"{len(cells)} cells")
    table.add_column("#", justify="right")
    table.add_column("cell (run directory)", overflow="fold")
    for key in keys:
        table.add_column(key, overflow="fold")
    for i, cell in enumerate(cells, 1):
        values = (escape(format_value(cell.settings[k])) for k in keys)
        table.add_row(str(i), escape(cell.name), *values)
    return table


# the paper-style table is two tables, so each fits an 80-column terminal: the settings with
# the accuracy, then the gradient and overlap numbers of the same rows (joined by "#"); no
# rules, numbers never break, and a setting too wide folds rather than ending in "..."
ACCURACY_COLUMNS = ("All", "Old", "New")
SHORT_HEADERS = (
    (r" \(first (\d+) steps\)", r" \1"),
    (r" \(whole run\)", " run"),
    ("ProbeSet ", ""),
)
SHORT_NOTE = "N: first N steps; run: whole run; SOC: ProbeSet SOC"


def _short(header: str) -> str:
    for pattern, repl in SHORT_HEADERS:
        header = re.sub(pattern, repl, header)
    return header


def results_tables(rows, spec) -> list[Table]:
    """The paper-style table (mean ± std over seeds) as two rich tables, accuracy first."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.ablation.results import aggregate, group_keys, table

    keys = group_keys(spec)
    header, body = table(aggregate(rows, keys), keys)
    lead = list(range(len(keys) + 1))  # the settings and the seeds column
    metrics = [i for i in range(len(lead), len(header)) if header[i] not in ACCURACY_COLUMNS]
    parts = [
        (
            "Ablation: accuracy %, mean ± std over seeds",
            lead + [header.index(m) for m in ACCURACY_COLUMNS],
        ),
        (f"Ablation: GDC and SOC of the rows above (#), mean ± std ({SHORT_NOTE})", metrics),
    ]
    out = []
    for title, columns in parts:
        t = Table(title=title, box=None, padding=(0, 1), header_style="bold underline")
        t.add_column("#", justify="right", no_wrap=True)
        for i in columns:
            if i < len(keys):
                t.add_column(header[i], overflow="fold")
            else:  # a number never breaks at its "±"
                t.add_column(_short(header[i]), justify="right", no_wrap=True)
        for n, row in enumerate(body, 1):
            t.add_row(str(n), *(escape(str(row[i])) for i in columns))
        out.append(t)
    return out


class CellProgress:
    """``ablate``'s display: one line per finished cell, and a bar over the cells to run.

    Cells finished by an earlier run are printed as skipped and taken off the bar's total, so
    its rate and ETA count only cells trained now.
    """

    def __init__(self, show, total: int):
        self.show, self.to_run, self.trained = show, total, 0
        show("cells", 0, total, "")

    def cell(self, outcome, done: int, total: int) -> None:
        style = {"done": "green", "skipped": "dim", "failed": "bold red"}[outcome.status]
        note = f" {outcome.seconds:.0f} s" if outcome.status == "done" else ""
        if outcome.error:
            note = f" {outcome.error}"
        name = escape(outcome.name + note)
        self.show.print(f"\\[{done}/{total}] [{style}]{outcome.status}[/] {name}", highlight=False)
        if outcome.status == "skipped":
            self.to_run -= 1
        else:
            self.trained += 1
        skipped = total - self.to_run
        self.show("cells", self.trained, self.to_run, f"{skipped} done before" if skipped else "")


@app.command("ablate")
def ablate(
    config: Annotated[
        Path | None, typer.Argument(help="Grid spec (TOML: [base] settings, [grid] lists).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Grid folder (default reports/ablate/<spec name>); rerun to resume."),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Run the shipped digits grid instead of CONFIG.")
    ] = False,
    example_coordinators: Annotated[
        bool,
        typer.Option(
            "--example-coordinators",
            help="Run the shipped digits grid of coordinators (none, eagc, pcgrad, cagrad, "
            "upgrad, mgda; 5 seeds; needs the [mtl] extra).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the cells and exit without training.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Local worker processes (one cell each).")] = 1,
    devices: Annotated[
        str | None,
        typer.Option(help="Comma list assigned to the workers in turn, e.g. cuda:0,cuda:1."),
    ] = None,
    launcher: Annotated[str, typer.Option(help="'local' processes or 'ray' tasks.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS / ray start).")
    ] = None,
    gpus_per_cell: Annotated[float, typer.Option(help="GPUs per Ray task.")] = 0.0,
    cpus_per_cell: Annotated[float, typer.Option(help="CPUs per Ray task.")] = 1.0,
    report: Annotated[bool, typer.Option(help="Write report.html besides the table.")] = True,
    paper: Annotated[
        str | None,
        typer.Option(
            help="simgcd-cub | -scars | -aircraft | -cifar100 | -imagenet100, or "
            "simgcd-dinov2-cub | -scars | -aircraft: the paper's grid (baseline, eagc, aga, "
            "eep x seeds 0-2, EAGC preset) on --root."
        ),
    ] = None,
    root: Annotated[
        str | None, typer.Option(help="With --paper: the benchmark's root folder.")
    ] = None,
    pretrained: Annotated[
        str | None, typer.Option(help="With --paper: the DINO ViT-B/16 (or DINOv2) weights file.")
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress bar (none either when stderr is not a terminal); the cell "
            "lines still print.",
        ),
    ] = False,
) -> None:
    """Train every cell of an ablation grid (skipping finished ones) and aggregate over seeds.

    Examples:

    
      entangle ablate --example --dry-run
      entangle ablate grid.toml --out reports/ablate/grid --workers 2

    Exit code 0 when every cell finished, 1 when a cell failed (recorded in its FAILED file
    and in results.csv; rerun to retry), 2 for a bad spec or option.
    """
    spec, name = grid_spec(config, example, example_coordinators, paper, root, pretrained)
    out = grid_folder(out, name, config)
    if dry_run:
        console.print(cells_table(spec.cells(), spec.swept_keys()))
        console.print(f"grid folder: [bold]{escape(str(out))}[/] (nothing run: --dry-run)")
        return
    launch = {"workers": workers, "launcher": launcher, "address": address}
    launch |= {"gpus_per_cell": gpus_per_cell, "cpus_per_cell": cpus_per_cell}
    run_and_show(spec, out, devices=devices, report=report, quiet=quiet, **launch)


def grid_spec(config, example: bool, example_coordinators: bool, paper, root, pretrained):
    """The grid the options name (exactly one of CONFIG, the examples, --paper) and its name."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.ablation import example_path, load_grid

    given = int(example) + int(example_coordinators) + int(config is not None) + int(bool(paper))
    if given != 1:
        raise EntangleValueError(
            "give one of a grid spec CONFIG.toml, --example, --example-coordinators or --paper"
        )
    if paper:
        # lazy: start-up time: the command's library loads when it runs (--help stays fast)
        from entangle.ablation.paper import paper_grid

        if not root:
            raise EntangleValueError(f"--paper {paper} needs --root, the benchmark's folder")
        return paper_grid(paper, root, **({"pretrained": pretrained} if pretrained else {})), paper
    if example_coordinators:
        path, name = example_path("coordinators"), "example-coordinators"
    else:
        path = example_path() if example else config
        name = "example" if example else Path(path).stem
    spec = load_grid(path)
    if example or example_coordinators:
        # the shipped spec's path is inside the installed package: the report's heading
        # names the command that ran it instead
        flag = "--example-coordinators" if example_coordinators else "--example"
        spec.source = f"entangle ablate {flag} ({Path(path).name})"
    return spec, name


def grid_folder(out: Path | None, name: str, config) -> Path:
    """``--out``, else reports/ablate/<spec name>; a name that gives no folder is refused."""
    if out is None and not name.strip("."):
        # "...toml" has the stem "..": the default folder would be reports/ itself
        raise EntangleValueError(
            f"the spec's file name {config} gives no folder name for the default "
            "reports/ablate/<spec name>: rename the spec or pass --out"
        )
    return out or Path("reports/ablate") / name


def run_and_show(spec, out: Path, *, devices, report: bool, quiet: bool, **launch) -> None:
    """Run the grid's cells (``launch``: run_grid's worker options), then print its tables.

    Exits 1 when a cell failed (its error is in results.csv and its FAILED file).
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.ablation import run_grid

    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else None
    total = len(spec.cells())
    with stage_progress(quiet) as show:
        result = run_grid(
            spec,
            out,
            devices=device_list,
            report=report,
            on_cell=CellProgress(show, total).cell,
            **launch,
        )
    for t in results_tables(result.rows, spec):
        console.print(t)
    for name, file in result.files.items():
        console.print(f"{name}: [bold]{escape(str(file))}[/]", highlight=False)
    if not result.ok:
        console.print(
            f"[bold red]{len(result.failed)} cell(s) failed[/]; their errors are in "
            "results.csv and cells/NAME/FAILED; rerun the same command to retry them"
        )
        raise typer.Exit(1)
