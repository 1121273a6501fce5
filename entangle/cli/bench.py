"""``entangle bench``: step-time ratios of the probe, paper-style diagnostics and EAGC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from entangle.cli.app import app
from entangle.cli.common import console, err_console, print_json
from entangle.errors import EntangleValueError


# long: typer reads the options from the signature (~78 lines); the body is ~40
@app.command()
def bench(
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Samples per step (two views each); default ViT 8 (CPU) / 64 (CUDA), MLP 128."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="ViT backend: auto (timm when installed), builtin or timm.")
    ] = "auto",
    repeats: Annotated[
        int | None, typer.Option(help="Timed rounds after one warm-up round (default 7).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads for the run; 1 avoids oversubscribing a shared CPU."),
    ] = None,
    clock: Annotated[
        str, typer.Option(help="wall (default) or cpu: process CPU time, CPU device only.")
    ] = "wall",
    probe_set_size: Annotated[
        int | None,
        typer.Option(help="SOC probe-set samples (default ViT 256 CPU / 2048 CUDA, MLP 1024)."),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(help="ViT input size (default 64 px ViT-S/16 on CPU, 224 px ViT-B/16 CUDA)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON instead of tables.")
    ] = False,
    quick: Annotated[
        bool, typer.Option(help="Tiny models and 3 rounds: checks the machinery, not speed.")
    ] = False,
    report_rows: Annotated[
        int,
        typer.Option(
            help="Also time a report of a run with this many saved feature rows, openTSNE vs "
            "scikit-learn side by side (20000 takes minutes); 0 skips it."
        ),
    ] = 0,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Instead: time building the demo's six-run report, cold and from its cache "
            "(median of --rounds rounds), wall-clock and CPU seconds; without --demo-runs, "
            "first times `entangle demo` itself end to end.",
        ),
    ] = False,
    demo_runs: Annotated[
        Path | None,
        typer.Option(help="With --report: an existing `entangle demo --out` folder to use."),
    ] = None,
    rounds: Annotated[
        int, typer.Option(help="With --report / --scaling / --memory: rounds (median).")
    ] = 3,
    scaling: Annotated[
        bool,
        typer.Option(
            "--scaling",
            help="Instead: how each instrument's cost grows with its work (batch, probed "
            "group, probe set, feature dimension, points), as ratios to the plain step.",
        ),
    ] = False,
    memory: Annotated[
        bool,
        typer.Option(
            "--memory",
            help="Instead: each variant's peak working memory above the fixture and its ratio "
            "to the plain step's (CPU: a fresh process per variant; CUDA: max allocated).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="With --scaling: folder for scaling.json and scaling.png."),
    ] = None,
) -> None:
    """Time plain, probed, paper-style and EAGC training steps side by side; print ratios.

    Examples: `entangle bench` (about a minute on 2 CPU cores), `entangle bench --quick
    --json`, `entangle bench --report --demo-runs reports/demo`.
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.bench.run import run_bench

    err = err_console
    progress = None if json_output else (lambda message: err.print(f"[dim]{message}[/]"))
    if (report or (scaling and not memory)) and rounds < 1:  # the modes that time --rounds
        raise EntangleValueError(f"--rounds must be at least 1, got {rounds}")
    if report:
        _report_mode(demo_runs, rounds, json_output, progress)
        return
    if memory:
        _memory_mode(device, quick, rounds, json_output, progress)
        return
    if scaling:
        _scaling_mode(quick, rounds, out, json_output, progress)
        return
    result = run_bench(
        device=device,
        batch_size=batch_size,
        model=model,
        repeats=repeats,
        quick=quick,
        threads=threads,
        clock=clock,
        probe_set_size=probe_set_size,
        image_size=image_size,
        progress=progress,
    )
    if report_rows:
        # lazy: start-up time: the command's library loads when it runs (--help stays fast)
        from entangle.bench.tsne import bench_report

        if progress:
            progress(f"report of a run with {report_rows} feature rows, both t-SNE backends")
        result["report"] = bench_report(n_rows=report_rows)
    if json_output:
        print_json(result, "bench --json")
        return
    _print_bench(result)


def _print_bench(result: dict) -> None:
    """The step-time mode's settings line, ratio and time tables, checks and report timing."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.bench.run import meets_target

    s = result["settings"]
    console.print(
        f"device {s['device']}, torch {s['torch']}, {s['threads']} threads, {s['clock']} clock, "
        f"{s['rounds']} rounds, load {s['load_average_before']} -> {s['load_average_after']}"
    )
    for name in ("vit", "mlp"):
        console.print(f"[bold]{name}[/]: {s[name]['model']}, batch {s[name]['batch_size']}")
    table = Table(title="step-time ratios (median of per-round ratios)")
    for column in ("ratio", "value", "IQR", "target", ""):
        table.add_column(column, justify="left" if column == "ratio" else "right")
    for key, value in result["ratios"].items():
        low, high = result["ratios_iqr"][key]
        op, bound = result["targets"].get(key, ("", None))
        ok = meets_target(key, value)
        mark = "" if ok is None else ("[green]ok[/]" if ok else "[red]missed[/]")
        target = f"{op} {bound:g}" if bound is not None else ""
        table.add_row(key, f"{value:.3f}x", f"{low:.2f}-{high:.2f}", target, mark)
    console.print(table)
    times = Table(title="median time per step / per evaluation (ms)")
    times.add_column("variant")
    times.add_column("ms", justify="right")
    for key, value in result["times_ms"].items():
        times.add_row(key, f"{value:.1f}")
    console.print(times)
    for key, value in result["checks"].items():
        console.print(f"{key}: {value:.2e}")
    if "report" in result:
        r = result["report"]
        console.print(
            f"report with {r['n_rows']} feature rows: openTSNE {r['opentsne_s']:.1f} s, "
            f"scikit-learn {r['sklearn_s']:.1f} s ({r['speedup']:.1f}x)"
        )


def _report_mode(demo_runs, rounds: int, json_output: bool, progress) -> None:
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.bench.report_time import bench_demo

    if demo_runs is not None and not (demo_runs / "runs").is_dir():
        raise EntangleValueError(
            f"--demo-runs {demo_runs} has no runs/ folder: pass the folder `entangle demo "
            "--out` wrote (it holds runs/ and report/)"
        )
    result = bench_demo(rounds=rounds, demo_folder=demo_runs, progress=progress)
    if json_output:
        print_json(result, "bench --json")
        return
    if "demo_s" in result:
        console.print(
            f"entangle demo end to end: {result['demo_s']:.1f} s ({result['demo_cpu_s']:.1f} s "
            f"CPU; its six runs {result['demo_runs_s']:.1f} s), load "
            f"{result['demo_load_before']:.1f} -> {result['demo_load_after']:.1f}"
        )
    console.print(
        f"report of {result['runs']} runs, median of {result['rounds']} rounds: cold "
        f"{result['cold_s']:.1f} s ({result['cold_cpu_s']:.1f} s CPU), cached "
        f"{result['cached_s']:.2f} s ({result['cached_cpu_s']:.2f} s CPU; "
        f"{result['cached_vs_cold']:.3f}x of cold); {result['cores']} cores, load "
        f"{result['load_before']:.1f} -> {result['load_after']:.1f} (CPU = this process and "
        "its t-SNE workers; wall-clock is this machine at this load)"
    )


def _scaling_mode(quick: bool, rounds: int, out, json_output: bool, progress) -> None:
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.bench.scaling import run_scaling, scaling_figure

    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.figures import figure_bytes

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.runs.io import atomic_json, atomic_write, make_dir

    if out is not None:
        make_dir(out)  # before the minutes of timing: a bad --out is refused at once
    result = run_scaling(quick=quick, rounds=rounds, progress=progress)
    if out is not None:
        atomic_json(out / "scaling.json", result)
        png = figure_bytes(scaling_figure(result), False)[0]
        atomic_write(out / "scaling.png", lambda fh: fh.write(png))
    if json_output:
        print_json(result, "bench --json")
        return
    for name, points in result["curves"].items():
        cells = []
        for p in points:
            values = ", ".join(f"{v:.3g}" for k, v in p.items() if k != "x")
            cells.append(f"{p['x']}: {values}")
        console.print(f"{name}: " + "; ".join(cells), highlight=False)


def _memory_mode(device: str, quick: bool, rounds: int, json_output: bool, progress) -> None:
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.bench.memory import run_memory

    result = run_memory(device=device, quick=quick, progress=progress, rounds=rounds)
    if json_output:
        print_json(result, "bench --json")
        return
    s = result["settings"]
    console.print(
        f"{s['model']} at {s['image_size']} px, batch {s['batch_size']}, {s['device']}: "
        f"{result['method']}",
        highlight=False,
    )
    table = Table(title="working memory above the fixture")
    for column in ("variant", "MB", "vs plain"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, mb in result["working_mb"].items():
        table.add_row(name, f"{mb:.0f}", f"{result['vs_plain'][name]:.2f}x")
    console.print(table)
