"""``entangle analyze``: diagnose saved GCD checkpoints into run directories and a report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from entangle.analysis.config import AnalyzeConfig
from entangle.cli.app import app
from entangle.cli.common import console, print_json, stage_progress
from entangle.cli.options import (
    LOSS,
    Device,
    InfonceTemperature,
    LabeledFraction,
    MemaxWeight,
    OldClasses,
    StudentTemperature,
    SupconTemperature,
    SupWeight,
    TeacherTemperature,
    WarmupTeacherTemperature,
)
from entangle.metrics.clustering import ACCURACY_PROTOCOLS

# the options' defaults are AnalyzeConfig's (the loss settings' via defaults.SimGCDLoss),
# read here so that each is written once; options without an AnalyzeConfig twin keep their own
_DEFAULTS = AnalyzeConfig()

_COLUMNS = (
    ("format", "format", "{}"),
    ("num_classes", "head classes K", "{}"),
    ("acc_all", "head acc All", "{:.3f}"),
    ("acc_old", "head acc Old", "{:.3f}"),
    ("acc_new", "head acc New", "{:.3f}"),
    ("kmeans_all", "k-means All", "{:.3f}"),
    ("kmeans_new", "k-means New", "{:.3f}"),
    ("soc", "SOC", "{:.3f}"),
    ("energy_labeled", "energy ratio labeled", "{:.3f}"),
    ("energy_unlabeled_new", "energy ratio new", "{:.3f}"),
    ("knn_new_to_old", "kNN new->old", "{:.3f}"),
    ("cos_raw", "cos(g_S, g_U) raw", "{:+.3f}"),
    ("conflict_rate_raw", "conflict rate raw", "{:.2f}"),
    ("cos_eagc", "cos EAGC", "{:+.3f}"),
    ("gdc_raw", "GDC raw", "{:.3f}"),
    ("gdc_eagc", "GDC EAGC", "{:.3f}"),
)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def summary_table(result) -> Table:
    """One column per analysed checkpoint, one row per number (narrow terminals fit)."""
    table = Table(title="entangle analyze")
    table.add_column("")
    for a in result.analyses:
        table.add_column(escape(a.run_dir.name), justify="right")
    for key, title, fmt in _COLUMNS:
        table.add_row(title, *(_cell(a.summary.get(key), fmt) for a in result.analyses))
    protocols = [str(a.summary.get("acc_protocol") or "-") for a in result.analyses]
    table.add_row("accuracy protocol", *protocols)
    # the protocols besides the one of the rows above, one row per number
    for protocol in (p for p in ACCURACY_PROTOCOLS if p not in protocols):
        for prefix, what in (("acc", "head acc"), ("kmeans", "k-means")):
            for k in ("all", "old", "new"):
                key = f"{prefix}_{k}_{protocol}"
                if any(key in a.summary for a in result.analyses):
                    cells = (_cell(a.summary.get(key), "{:.3f}") for a in result.analyses)
                    table.add_row(f"{what} {k.title()} ({protocol})", *cells)
    return table


def objective_line(config, result) -> str:
    """Which objective the gradient diagnostics differentiated (settings + teacher T)."""
    loss = config.loss_config()
    settings = (
        f"sup_weight {loss.sup_weight}, memax {loss.memax_weight}, student T "
        f"{loss.student_temperature}, teacher T {loss.warmup_teacher_temperature} -> "
        f"{loss.teacher_temperature} over {loss.warmup_teacher_epochs} epochs, SupCon T "
        f"{loss.supcon_temperature}, InfoNCE T {loss.infonce_temperature}"
    )
    used = [
        f"{a.run_dir.name} {a.summary['teacher_temperature']:.4g}"
        for a in result.analyses
        if "teacher_temperature" in a.summary
    ]
    teacher = f"; teacher T used: {', '.join(used)}" if used else ""
    return f"gradients of the SimGCD objective: {settings}{teacher}"


def formats_table() -> Table:
    """The registered checkpoint layouts, in detection order, with whom they serve."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.checkpoints import list_layouts

    table = Table(title="checkpoint formats (tried in this order)")
    for column in ("format", "codebases", "what loads"):
        table.add_column(column, overflow="fold")
    for layout in list_layouts():
        table.add_row(layout.name, layout.codebases, layout.loads)
    return table


def _print_formats(value: bool) -> None:
    if value:
        console.print(formats_table())
        raise typer.Exit()


# long: typer reads the options from the signature (~100 lines); the body is 3
@app.command("analyze")
def analyze_command(
    out: Annotated[Path, typer.Option(help="Output folder: one run per checkpoint + report/.")],
    checkpoints: Annotated[
        list[Path] | None,
        typer.Argument(help="Checkpoint files in any layout of --list-formats."),
    ] = None,
    data: Annotated[
        str,
        typer.Option(
            help="digits | synthetic | imagefolder:PATH | a benchmark NAME:ROOT (cub, cifar10, "
            "...; docs/benchmarks.md) | "
            "features:FILE.npz (arrays features, labels, labeled; optional novel, "
            "old_classes, logits, class_names)"
        ),
    ] = _DEFAULTS.data,
    old_classes: OldClasses = None,
    labeled_fraction: LabeledFraction = _DEFAULTS.labeled_fraction,
    labeled_split: Annotated[
        Path | None,
        typer.Option(
            help="File of your own labeled samples, one index or file name per line "
            "(replaces the random split with --labeled-fraction)."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Reference checkpoint: EAGC with AGA and its conceptor (else EEP only)."),
    ] = None,
    grad_batches: Annotated[
        int, typer.Option(help="Batches for gradient diagnostics.")
    ] = _DEFAULTS.grad_batches,
    batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = _DEFAULTS.batch_size,
    device: Device = _DEFAULTS.device,
    max_samples: Annotated[
        int | None, typer.Option(help="Analyse at most N samples (random, seeded).")
    ] = None,
    tsne: Annotated[
        bool, typer.Option("--tsne/--no-tsne", help="t-SNE map k-NN overlap.")
    ] = _DEFAULTS.tsne,
    grad: Annotated[
        bool, typer.Option("--grad/--no-grad", help="Gradient diagnostics.")
    ] = _DEFAULTS.grad,
    kmeans: Annotated[
        bool, typer.Option("--kmeans/--no-kmeans", help="k-means accuracy.")
    ] = _DEFAULTS.kmeans,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="HTML/PNG report.")
    ] = _DEFAULTS.report,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint", help="Allow checkpoints that run code on load (unsafe)."
        ),
    ] = _DEFAULTS.trust_checkpoint,
    model: Annotated[
        str | None,
        typer.Option(help="package.module:factory returning (backbone, head) for other layouts."),
    ] = None,
    accuracy: Annotated[
        str,
        typer.Option(
            help="Accuracy protocols, comma list of v1 (original GCD: one mapping per group), "
            "v2 (one Hungarian mapping), v2b (SimGCD balanced: mean per-class recall); the "
            "first fills the acc_* fields."
        ),
    ] = ",".join(_DEFAULTS.accuracy),
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Force this checkpoint layout (see --list-formats) instead of detecting it.",
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(
            help="Separate head file (GCD / SelEx model_proj_head.pt; found beside model.pt by "
            "default)."
        ),
    ] = None,
    list_formats: Annotated[
        bool,
        typer.Option(
            "--list-formats",
            help="Print the checkpoint layouts entangle reads, with their codebases, and exit.",
            is_eager=True,
            callback=_print_formats,
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    sup_weight: SupWeight = LOSS.sup_weight,
    memax_weight: MemaxWeight = LOSS.memax_weight,
    student_temperature: StudentTemperature = LOSS.student_temperature,
    warmup_teacher_temperature: WarmupTeacherTemperature = LOSS.warmup_teacher_temperature,
    teacher_temperature: TeacherTemperature = LOSS.teacher_temperature,
    warmup_teacher_epochs: Annotated[
        int,
        typer.Option(
            help="Teacher warm-up epochs of the training run (the teacher temperature is read "
            "at the checkpoint's epoch; after the warm-up when it has none).",
            rich_help_panel="SimGCD objective",
        ),
    ] = LOSS.warmup_teacher_epochs,
    supcon_temperature: SupconTemperature = LOSS.supcon_temperature,
    infonce_temperature: InfonceTemperature = LOSS.infonce_temperature,
    seed: Annotated[
        int, typer.Option(help="Seed of split, subsample, batches, k-means.")
    ] = _DEFAULTS.seed,
) -> None:
    """Diagnose saved GCD checkpoints: accuracy, subspace overlap, energy, gradient conflict.

    Examples:

    
      entangle analyze run/checkpoints/model.pt --data imagefolder:cub/ --out an/
      entangle analyze --list-formats
    """
    # every option by name: the signature is the one list of them, so the steps read them
    # from here rather than restate them
    options = dict(locals())
    config = analyze_config(options)
    run_analyze(options["checkpoints"] or [], options["out"], config, options["as_json"])


# the command's options that are not AnalyzeConfig fields, and those named otherwise there
RUN_OPTIONS = ("out", "checkpoints", "list_formats", "as_json")
RENAMED = {"format": "checkpoint_format", "head": "head_file"}


def analyze_config(options: dict) -> AnalyzeConfig:
    """The AnalyzeConfig of the command's options (by name, as the signature has them)."""
    fields = {RENAMED.get(k, k): v for k, v in options.items() if k not in RUN_OPTIONS}
    if fields["labeled_split"] is not None:
        fields["labeled_split"] = str(fields["labeled_split"])
    return AnalyzeConfig(**fields)


def run_analyze(checkpoints: list[Path], out: Path, config: AnalyzeConfig, as_json: bool) -> None:
    """Analyse ``checkpoints`` into ``out``; print each layout found, then the summary."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.analysis import analyze

    def loaded(path: str, ckpt) -> None:
        if not as_json:
            classes = f", K={ckpt.num_classes}" if ckpt.num_classes else ""
            line = f"{escape(path)}: [bold]{ckpt.format}[/] layout{classes}"
            console.print(line, highlight=False)

    if as_json:
        _print_json(analyze(checkpoints, out, config, on_loaded=loaded))
        return
    with stage_progress() as progress:
        result = analyze(checkpoints, out, config, progress=progress, on_loaded=loaded)
    _print_result(result, config, config.grad)


def _print_json(result) -> None:
    """``--json``: the device, the report path and each run's notes and summary."""
    payload = {
        "device": result.device,
        "report": None if result.report is None else str(result.report),
        "runs": [
            {"checkpoint": a.checkpoint, "run": str(a.run_dir), "notes": a.notes}
            | {"summary": a.summary}
            for a in result.analyses
        ],
    }
    print_json(payload, "analyze --json")  # NaN/inf as null, tensors and arrays as lists


def _print_result(result, config, grad: bool) -> None:
    """The summary table, the objective line, each run's notes and timings, the report path."""
    console.print(summary_table(result))
    if grad:
        console.print(objective_line(config, result), highlight=False)
    for a in result.analyses:
        for note in a.notes:
            console.print(f"[dim]{escape(a.run_dir.name)}: {escape(note)}[/]", highlight=False)
        s = a.summary
        timing = (
            [f"features {s['features_per_image_s'] * 1e3:.1f} ms/image"]
            if ("features_per_image_s" in s)
            else []
        )
        if "grad_per_image_s" in s:
            timing.append(f"gradients {s['grad_per_image_s'] * 1e3:.1f} ms/view")
        if timing:
            console.print(f"{escape(a.run_dir.name)} on {result.device}: {', '.join(timing)}")
    if result.report is not None:
        console.print(f"report: [bold]{escape(str(result.report))}[/]", highlight=False)
