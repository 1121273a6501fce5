"""``--preset simgcd|eagc|eagc-dinov2``: the public scripts' per-dataset values as fields.

The numbers live in :mod:`entangle.gcd.script_values` (one home, each naming its script);
this module only maps a benchmark name and a preset to the ``TrainConfig`` fields they set.
Flags the user passes override a preset (the CLI applies a preset value only where the flag
was left at its default).
"""

from __future__ import annotations

from entangle.errors import EntangleValueError
from entangle.gcd.script_values import EAGC_DINOV2_SCRIPTS, EAGC_SCRIPTS, SIMGCD_SCRIPTS

PRESETS = ("simgcd", "eagc", "eagc-dinov2")
_TABLES = {"simgcd": SIMGCD_SCRIPTS, "eagc": EAGC_SCRIPTS, "eagc-dinov2": EAGC_DINOV2_SCRIPTS}
# entangle's benchmark name -> the scripts' --dataset_name
SCRIPT_NAMES = {
    "cub": "cub",
    "scars": "scars",
    "aircraft": "aircraft",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet100": "imagenet_100",
    "imagenet1k": "imagenet_1k",
    "herbarium19": "herbarium_19",
}
# SimGCD train.py: --grad_from_block 11 of 12 ViT-B blocks (every script) -> 1 trainable block
_GRAD_FROM_BLOCK = 11
_VIT_BLOCKS = 12


def preset_values(preset: str, data: str) -> dict:
    """``TrainConfig`` field values a preset sets for a ``NAME:ROOT`` benchmark.

    Returns:
        ``{field: value}``, plus ``"preset_source"`` (the script file). ``eagc-dinov2``
        sets ``model vit-b14-reg4-dinov2`` (its ``--pretrained`` must be DINOv2 ViT-B/14 with
        registers).

    Raises:
        EntangleValueError: unknown preset, data that is not a benchmark, or a benchmark the
            preset's scripts do not cover.
    """
    if preset not in PRESETS:
        raise EntangleValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    name = str(data).partition(":")[0].strip().lower()
    if name not in SCRIPT_NAMES or ":" not in str(data):
        raise EntangleValueError(
            f"--preset needs a benchmark as --data NAME:ROOT ({', '.join(SCRIPT_NAMES)}), got "
            f"{data!r}"
        )
    table = _TABLES[preset]
    script = table.get(SCRIPT_NAMES[name])
    if script is None:
        raise EntangleValueError(
            f"the {preset} scripts have no {name} run; covered: "
            + ", ".join(b for b, s in SCRIPT_NAMES.items() if s in table)
        )
    values = {
        "model": getattr(script, "model", "vit-b16"),
        "trainable_blocks": _VIT_BLOCKS - _GRAD_FROM_BLOCK,
        "epochs": script.epochs,
        "batch_size": script.batch_size,
        "weight_decay": script.weight_decay,
        "sup_weight": script.sup_weight,
        "memax_weight": script.memax_weight,
        # SimGCD train.py / EAGC methods/SimGCD.py: args.image_size = 224 (not a script flag)
        "image_size": 224,
        "preset_source": script.source,
    }
    if preset == "simgcd":
        return values | {
            "lr": script.lr,
            "warmup_teacher_epochs": script.warmup_teacher_epochs,
            "eagc": False,
        }
    return values | {
        # train_*.sh: --lr_backbone 0.1 for the backbone, --lr 1.0 for the projector
        "lr": script.lr_backbone,
        "lr_head": script.lr,
        # EAGC's train_*.sh pass --warmup_teacher_temp_epochs 30, as SimGCD's run_*.sh do
        "warmup_teacher_epochs": SIMGCD_SCRIPTS[SCRIPT_NAMES[name]].warmup_teacher_epochs,
        "eagc": True,
        "eep_weight": script.eep_weight,
        "aga_weight": script.aga_weight,
        "aperture": script.aperture,
        "reference_epochs": script.reference_epochs,
        "reference_batch_size": script.reference_batch_size,
        "reference_lr": script.reference_lr,
        # train_*.sh: --projection_head_nlayers 1, the MLP_Head in front of the DINO head
        "head_mlp_layers": script.projection_head_nlayers,
    }
