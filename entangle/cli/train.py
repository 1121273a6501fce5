"""`entangle train`: one GCD run with the probe (and optionally EAGC) into a run directory."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from entangle.cli.app import app
from entangle.cli.common import console, literal, stage_progress
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
from entangle.errors import EntangleValueError
from entangle.gcd.config import TrainConfig

# the options' defaults are TrainConfig's (the coordinator settings' via CoordinatorConfig), read
# here so that each is written once; options without a TrainConfig twin keep their own
_DEFAULTS = TrainConfig()


@app.command("train")
def train_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Run directory (an unfinished one is resumed).")],
    data: Annotated[
        str,
        typer.Option(
            help="digits | synthetic | imagefolder:PATH | a benchmark NAME:ROOT (cub, scars, "
            "aircraft, cifar10, cifar100, imagenet100, imagenet1k, herbarium19; docs/benchmarks.md)"
        ),
    ] = _DEFAULTS.data,
    old_classes: OldClasses = None,
    labeled_fraction: LabeledFraction = _DEFAULTS.labeled_fraction,
    model: Annotated[str, typer.Option(help="digits-mlp | vit-s16 | vit-b16 | vit-tiny-test")] = (
        _DEFAULTS.model
    ),
    vit_backend: Annotated[
        str,
        typer.Option(help="ViT implementation: auto/builtin (torch only) or timm ([vit] extra)."),
    ] = _DEFAULTS.vit_backend,
    pretrained: Annotated[
        str | None, typer.Option(help="Local DINO/DINOv2 weights (ViT) or backbone state dict.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (ViT default 200, digits 12).")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = _DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option(help="SGD learning rate (cosine schedule).")] = _DEFAULTS.lr,
    lr_head: Annotated[
        float | None,
        typer.Option(help="The head's own learning rate (default: --lr; EAGC scripts: 1.0)."),
    ] = None,
    head_mlp_layers: Annotated[
        int,
        typer.Option(
            help="Layers of the EAGC code's ReLU MLP in front of the head (0: SimGCD's head; "
            "EAGC scripts: 1).",
            min=0,
            max=8,
        ),
    ] = _DEFAULTS.head_mlp_layers,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = _DEFAULTS.momentum,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay (none on biases and 1-D parameters).")
    ] = _DEFAULTS.weight_decay,
    sup_weight: SupWeight = LOSS.sup_weight,
    memax_weight: MemaxWeight = LOSS.memax_weight,
    student_temperature: StudentTemperature = LOSS.student_temperature,
    warmup_teacher_temperature: WarmupTeacherTemperature = LOSS.warmup_teacher_temperature,
    teacher_temperature: TeacherTemperature = LOSS.teacher_temperature,
    warmup_teacher_epochs: Annotated[
        int | None,
        typer.Option(
            help="Teacher warm-up epochs (default: SimGCD's 30 of 200, scaled to --epochs).",
            rich_help_panel="SimGCD objective",
        ),
    ] = None,
    supcon_temperature: SupconTemperature = LOSS.supcon_temperature,
    infonce_temperature: InfonceTemperature = LOSS.infonce_temperature,
    start: Annotated[
        str,
        typer.Option(
            help="Initial backbone: pretrained | reference | auto (reference for EAGC, as "
            "its authors; pretrained for the baseline)."
        ),
    ] = _DEFAULTS.start,
    eagc: Annotated[bool, typer.Option("--eagc/--no-eagc", help="Apply EAGC.")] = _DEFAULTS.eagc,
    aga: Annotated[bool, typer.Option("--aga/--no-aga", help="EAGC's AGA part.")] = _DEFAULTS.aga,
    eep: Annotated[bool, typer.Option("--eep/--no-eep", help="EAGC's EEP part.")] = _DEFAULTS.eep,
    adaptive: Annotated[
        bool, typer.Option("--adaptive/--fixed", help="Energy-adaptive or fixed EEP weight.")
    ] = _DEFAULTS.adaptive,
    coordinator: Annotated[
        str,
        typer.Option(
            help="none | eagc (= --eagc) | a torchjd aggregator: pcgrad, cagrad, mgda, upgrad, "
            "imtlg, alignedmtl, nashmtl, dualproj, config, gradvac, fairgrad, sum, mean "
            "([mtl] extra; docs/coordinators.md)."
        ),
    ] = _DEFAULTS.coordinator,
    coordinator_params: Annotated[
        str,
        typer.Option(
            help="What a torchjd aggregator sees: trainable (backbone + head) or backbone."
        ),
    ] = _DEFAULTS.coordinator_params,
    cagrad_c: Annotated[float, typer.Option(help="CAGrad's c.")] = _DEFAULTS.cagrad_c,
    nashmtl_max_norm: Annotated[
        float, typer.Option(help="Nash-MTL's update norm clip.")
    ] = _DEFAULTS.nashmtl_max_norm,
    alignedmtl_scale_mode: Annotated[
        str, typer.Option(help="Aligned-MTL's scale: min, median or rmse.")
    ] = _DEFAULTS.alignedmtl_scale_mode,
    aga_weight: Annotated[float, typer.Option(help="lambda_AGA.")] = TrainConfig.aga_weight,
    eep_weight: Annotated[
        float, typer.Option(help="beta (EEP strength).")
    ] = TrainConfig.eep_weight,
    aperture: Annotated[
        str,
        typer.Option(
            help="Conceptor aperture (a number); 'auto': the largest labeled-minus-unlabeled "
            "energy gap of the reference's features; 'jaeger': Jaeger's criterion on the "
            "labeled features alone (docs/calibration.md)."
        ),
    ] = str(_DEFAULTS.aperture),
    reference: Annotated[
        str | None,
        typer.Option(help="Reference model checkpoint; trained on labeled data if unset."),
    ] = None,
    reference_epochs: Annotated[
        int, typer.Option(help="Reference model epochs (labeled data only).")
    ] = _DEFAULTS.reference_epochs,
    reference_lr: Annotated[
        float, typer.Option(help="Reference model learning rate.")
    ] = _DEFAULTS.reference_lr,
    probe_every: Annotated[int, typer.Option(help="Probe one step in N.")] = _DEFAULTS.probe_every,
    attribution: Annotated[
        int, typer.Option(help="Per-sample conflict attribution every N probed steps; 0: off.")
    ] = _DEFAULTS.attribution,
    device: Device = _DEFAULTS.device,
    seed: Annotated[int, typer.Option(help="Random seed.", min=0, max=2**32 - 1)] = _DEFAULTS.seed,
    accuracy: Annotated[
        str,
        typer.Option(
            help="Accuracy protocols of each evaluation: comma list of v1, v2, v2b (the first "
            "fills acc_all/old/new)."
        ),
    ] = ",".join(_DEFAULTS.accuracy),
    on_nan: Annotated[
        str,
        typer.Option(
            help="After --nan-limit consecutive non-finite losses: stop (run left incomplete, "
            "reason in STOPPED) or continue."
        ),
    ] = _DEFAULTS.on_nan,
    nan_limit: Annotated[
        int, typer.Option(help="Consecutive non-finite losses tolerated.")
    ] = _DEFAULTS.nan_limit,
    amp: Annotated[
        str,
        typer.Option(help="off | fp16 (GradScaler) | bf16: mixed precision for forward + loss."),
    ] = _DEFAULTS.amp,
    preset: Annotated[
        str | None,
        typer.Option(
            help="simgcd | eagc | eagc-dinov2: the public scripts' per-dataset values for a "
            "benchmark --data NAME:ROOT (flags you pass override them)."
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="Allow --pretrained / --reference files that run code on load (unsafe; "
            "DINO's full training checkpoints need it).",
        ),
    ] = False,
    show_config: Annotated[
        bool,
        typer.Option("--show-config", help="Print the resolved config as JSON and exit."),
    ] = False,
    image_size: Annotated[
        int,
        typer.Option(
            help="Side of the image crops (train views and evaluation), pixels; SimGCD: 224.",
            min=16,
            max=1024,
        ),
    ] = 224,
    workers: Annotated[
        int | None,
        typer.Option(
            help="DataLoader worker processes for image data (default: half the cores up to "
            "8, none below 4 cores); batches are the same for any count.",
            min=0,
            max=256,
        ),
    ] = None,
    gpus: Annotated[
        int,
        typer.Option(
            help="Processes to train with (DistributedDataParallel, one per GPU; gloo on "
            "--device cpu): relaunches this command under torchrun --nproc_per_node N. "
            "--batch-size is per process (docs/distributed.md).",
            min=1,
            max=1024,
        ),
    ] = 1,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress bar (none either when stderr is not a terminal); the epoch "
            "lines still print.",
        ),
    ] = False,
) -> None:
    """Train a GCD model with the probe, writing steps, epochs, features and checkpoints.

    Examples:

    
      entangle train runs/eagc --data digits --model digits-mlp --eagc --epochs 6
      entangle train runs/vit --data imagefolder:cub/ --model vit-b16 --eagc
      torchrun --nproc_per_node 4 -m entangle train runs/cub --data cub:/d/cub
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    if gpus > 1 and not show_config and distributed.launched_world() == 1:
        raise typer.Exit(_relaunch(gpus))
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.train import (
        TrainConfig,
        check_run_dir,
        ensure_reference,
        prepare,
        resolve_device,
        train,
    )

    vit = model.startswith("vit-")
    config = TrainConfig(
        preset=preset,
        data=data,
        old_classes=old_classes,
        labeled_fraction=labeled_fraction,
        model=model,
        vit_backend=vit_backend,
        pretrained=pretrained,
        epochs=epochs if epochs is not None else (200 if vit else 12),
        batch_size=batch_size,
        lr=lr,
        lr_head=lr_head,
        head_mlp_layers=head_mlp_layers,
        momentum=momentum,
        weight_decay=weight_decay,
        sup_weight=sup_weight,
        memax_weight=memax_weight,
        student_temperature=student_temperature,
        warmup_teacher_temperature=warmup_teacher_temperature,
        teacher_temperature=teacher_temperature,
        warmup_teacher_epochs=warmup_teacher_epochs,
        supcon_temperature=supcon_temperature,
        infonce_temperature=infonce_temperature,
        start=start,
        eagc=eagc,
        aga=aga,
        eep=eep,
        adaptive=adaptive,
        coordinator=coordinator,
        coordinator_params=coordinator_params,
        cagrad_c=cagrad_c,
        nashmtl_max_norm=nashmtl_max_norm,
        alignedmtl_scale_mode=alignedmtl_scale_mode,
        aga_weight=aga_weight,
        eep_weight=eep_weight,
        aperture=aperture,
        reference=reference,
        reference_epochs=reference_epochs,
        reference_lr=reference_lr,
        probe_every=probe_every,
        attribution=attribution,
        device=device,
        seed=seed,
        accuracy=accuracy,
        on_nan=on_nan,
        nan_limit=nan_limit,
        amp=amp,
        workers=workers,
        image_size=image_size,
    )
    source = {}
    if preset is not None:
        config, source = _apply_preset(ctx, config, preset)
    if show_config:
        import json

        # lazy: start-up time: the command's library loads when it runs (--help stays fast)
        from entangle.gcd.config import run_config

        shown = run_config(config) | ({"preset_script": source} if preset else {})
        typer.echo(json.dumps(shown, indent=2))
        return
    # a bad device, run directory or settings mismatch fails now, not after pretraining
    device_used = resolve_device(config.device)
    if distributed.launched_world() > 1:
        config = _join_ranks(config, device_used)
    main = distributed.is_main_process()
    if not trust_checkpoint:  # refused now, not after minutes of pretraining
        # lazy: start-up time: the command's library loads when it runs (--help stays fast)
        from entangle.checkpoints.safe import refuse_code

        for given in (config.pretrained, config.reference):
            if given:
                refuse_code(given)
    if main:
        check_run_dir(config, out)
    try:
        with stage_progress(quiet) if main else _silent() as progress:
            setup = prepare(
                config,
                trust_checkpoint=trust_checkpoint,
                progress=lambda stage, e, loss: progress(
                    stage, e + 1, config.pretrain_epochs, f"loss {loss:.3f}"
                ),
            )
            if main and config.needs_reference():  # shown here; train() reuses it
                ensure_reference(
                    config,
                    setup,
                    progress=lambda stage, e, loss: progress(
                        stage, e + 1, config.reference_epochs, f"loss {loss:.3f}"
                    ),
                )
            view = TrainDisplay(progress, f"train {config.variant()}", config.epochs)
            summary = train(config, out, setup, on_step=view.step, on_epoch=view.epoch)
    finally:
        if distributed.world_size() > 1:
            import torch

            torch.distributed.destroy_process_group()
    if not main:
        return
    for line in summary_lines(summary, out, config.data):  # a path is never broken
        console.print(line, highlight=False, soft_wrap=True)


class TrainDisplay:
    """What ``entangle train`` shows while it runs: the step bar and one line per evaluation.

    The bar (stderr) carries steps done, it/s, elapsed, ETA and the last loss; the loss is read
    from the GPU at most every ``refresh_s`` seconds, and not at all when no bar is drawn. Each
    evaluation prints one stdout line in SimGCD's log.txt wording (``Epoch E, Train ACC
    Unlabelled_v2: All .. | Old .. | New ..``) with the epoch's mean training loss, summed on
    the device and read once per epoch.
    """

    def __init__(self, report, stage: str, epochs: int, refresh_s: float = 0.5):
        self.report, self.stage, self.epochs, self.refresh_s = report, stage, epochs, refresh_s
        self.shown = report.shown
        self.total_loss = None  # this epoch's loss sum, a device tensor
        self.steps = 0
        self.last_read = -math.inf
        self.note = ""

    def step(self, step: int, total: int, loss) -> None:
        self.total_loss = loss if self.total_loss is None else self.total_loss + loss
        self.steps += 1
        if self.shown:
            now = time.monotonic()
            if now - self.last_read >= self.refresh_s or step == total:
                self.last_read = now
                self.note = f"loss {float(loss):.4f}"
            self.report(self.stage, step, total, self.note)

    def epoch(self, epoch: int, record: dict) -> None:
        mean = float(self.total_loss) / self.steps if self.steps else math.nan
        self.total_loss, self.steps = None, 0
        for line in epoch_lines(epoch, self.epochs, mean, record):
            self.report.print(literal(line), highlight=False)


def epoch_lines(epoch: int, epochs: int, mean_loss: float, record: dict) -> list[str]:
    """One evaluation in SimGCD's log.txt words: the epoch's mean loss, then All/Old/New.

    ``epoch`` is 0-based, as in SimGCD's log and entangle's epochs.jsonl; ``(e of N)`` counts.
    """
    protocol = record.get("acc_protocol") or "v2"
    accs = " | ".join(
        f"{name} {_number(record.get(f'acc_{name.lower()}'))}" for name in ("All", "Old", "New")
    )
    accuracy = f"Epoch {epoch}, Train ACC Unlabelled_{protocol}: {accs}"
    if record.get("nan_reason"):
        accuracy += f" ({record['nan_reason']})"
    loss = f"Train Epoch: {epoch} Avg Loss: {_number(mean_loss)} (epoch {epoch + 1} of {epochs})"
    return [loss, accuracy]


def _number(value, digits: int = 4) -> str:
    """``value`` to ``digits`` decimals; ``nan`` for a missing or non-finite one (never dropped)."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


def summary_lines(summary: dict, out: Path, data: str) -> list[str]:
    """The closing lines: where the run is, its headline numbers, and the report command."""
    shown = shlex.quote(str(out))
    lines = [
        f"[green]Run written:[/] [bold]{escape(str(out))}[/] ({escape(data)})",
        "  last evaluation ({}): All {} | Old {} | New {}".format(
            escape(str(summary.get("acc_protocol") or "v2")),
            *(_number(summary.get(k)) for k in ("acc_all", "acc_old", "acc_new")),
        ),
    ]
    early = summary.get("early_steps", 200)
    gdc = f"  GDC first {early} steps {_number(summary.get('gdc_early'), 3)} (raw"
    if "gdc_early_eagc" in summary:
        gdc += f"; EAGC-corrected {_number(summary['gdc_early_eagc'], 3)}"
    lines.append(gdc + ")")
    lines.append(
        f"  conflict rate {_number(summary.get('conflict_rate'), 2)}, ProbeSet SOC first "
        f"{early} steps {_number(summary.get('soc_early'), 3)}"
    )
    probed = summary.get("steps_probed")
    if probed is not None:
        nan = summary.get("nan_steps") or 0
        bad = f", {nan} with non-finite values" if nan else ""
        lines.append(f"  {probed} probed steps{bad}")
    lines.append(f"  summary in {escape(str(out / 'DONE'))}; see it with:")
    report = shlex.quote(f"reports/{Path(out).resolve().name}")
    lines.append(f"  entangle report {escape(shown)} --out {escape(report)}")
    return lines


def _apply_preset(ctx: typer.Context, config, preset: str):
    """``config`` with the preset's values where the user left the flag at its default."""
    import dataclasses

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.presets import preset_values

    values = preset_values(preset, config.data)
    source = {"preset_source": values.pop("preset_source")}
    # a field without a flag (trainable_blocks, reference_batch_size) has no source: preset wins
    keep = {
        k: v
        for k, v in values.items()
        if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") == "DEFAULT"
    }
    return dataclasses.replace(config, **keep), source


def _relaunch(gpus: int) -> int:
    """Run this very command under torchrun with ``gpus`` processes; its exit status."""
    import subprocess
    import sys

    args = _without_gpus(sys.argv[1:])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={gpus}", "-m", "entangle", *args]
    console.print(
        f"launching {gpus} processes: torchrun --nproc_per_node {gpus} -m entangle "
        f"{escape(' '.join(args))}",
        highlight=False,
    )
    return subprocess.call(command)


def _without_gpus(argv: list[str]) -> list[str]:
    """``argv`` minus ``--gpus N`` / ``--gpus=N`` (the launched processes must not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out


def _join_ranks(config, device):
    """Join torchrun's process group; on CUDA this rank trains on ``cuda:LOCAL_RANK``."""
    import dataclasses

    import torch

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    cuda = device.type == "cuda"
    if cuda and distributed.local_rank() >= torch.cuda.device_count():
        raise EntangleValueError(
            f"torchrun started {distributed.launched_world()} processes but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); lower --nproc_per_node / --gpus"
        )
    distributed.init_from_env(use_cuda=cuda)
    if cuda:
        config = dataclasses.replace(config, device=f"cuda:{distributed.local_rank()}")
    return config


class _silent:
    """``stage_progress``'s stand-in on ranks other than 0 (one progress line per run)."""

    def __enter__(self):
        def report(*args, **kwargs) -> None:
            return None

        report.shown = False
        report.print = report  # the epoch lines are rank 0's (it evaluates)
        return report

    def __exit__(self, *exc):
        return False
