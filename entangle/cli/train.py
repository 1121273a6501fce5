"""`entangle train`: one GCD run with the probe (and optionally EAGC) into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entangle.cli.app import app
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
from entangle.cli.train_run import run_train
from entangle.gcd.config import TrainConfig
from entangle.models.registry import backbone_names

# the options' defaults are TrainConfig's (the coordinator settings' via CoordinatorConfig), read
# here so that each is written once; options without a TrainConfig twin keep their own
_DEFAULTS = TrainConfig()
# the names come from the backbone registry (importing it runs entangle/models/__init__.py,
# which registers the built-ins), so a registered backbone shows up here
_MODEL_HELP = "Backbone: " + " | ".join(backbone_names()) + "."


# long: typer reads the options from the signature (~195 lines); the body is 4
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
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = _DEFAULTS.model,
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
    attribution_rows: Annotated[
        int, typer.Option(help="Attribute a seeded subsample of N rows (less memory); 0: all.")
    ] = _DEFAULTS.attribution_rows,
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
    # every option by name (ctx, out, the run options, each TrainConfig field): the signature
    # is the one list of them, so the steps read them from here rather than restate them
    options = dict(locals())
    run_train(options.pop("ctx"), options)
