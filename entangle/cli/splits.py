"""``entangle splits DATA``: the labeled / unlabeled / test split a run on DATA trains with."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from entangle.cli.app import app
from entangle.cli.common import console
from entangle.errors import EntangleValueError


@app.command("splits")
def splits(
    data: Annotated[
        str, typer.Argument(help="A benchmark as NAME:ROOT, e.g. cub:/data/cub (see docs).")
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print {dataset, old_classes, new_classes, labeled, unlabeled, test} as JSON "
            "(image paths relative to the dataset's image folder).",
        ),
    ] = False,
) -> None:
    """Show the split a run on DATA uses: images per part and per class (SimGCD's split)."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.data.benchmarks import read_benchmark

    name, _, root = data.partition(":")
    if not root:
        raise EntangleValueError(f"splits takes a benchmark as NAME:ROOT, got {data!r}")
    split = read_benchmark(name.strip(), root)
    if as_json:
        typer.echo(json.dumps(split.as_json()))
        return
    counts = split.counts()
    parts = counts["parts"]
    console.print(
        f"{split.dataset}: {counts['old_classes']} old + {counts['new_classes']} new classes; "
        f"labeled {parts['labeled']}, unlabeled {parts['unlabeled']} (accuracy is measured on "
        f"these), test {parts['test']} images; paths relative to {escape(str(split.image_dir))}",
        highlight=False,
        markup=False,
    )
    console.print(
        f"{'class':<40} {'kind':<4} {'labeled':>8} {'unlabeled':>9} {'test':>6}",
        highlight=False,
        markup=False,
    )
    for row in counts["per_class"]:
        console.print(
            f"{row['class'][:40]:<40} {row['kind']:<4} {row['labeled']:>8} "
            f"{row['unlabeled']:>9} {row['test']:>6}",
            highlight=False,
            markup=False,
        )
