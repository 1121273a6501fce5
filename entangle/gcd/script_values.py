"""Per-dataset values of the public training scripts, as data, each naming its source file.

The one place entangle states what SimGCD's and the EAGC authors' shell scripts pass per
dataset (docs/protocol.md, "Per-dataset script values"). Presets and docs read these tables
instead of restating the numbers. Keys are the scripts' own ``--dataset_name`` values.

Read from CVMI-Lab/SimGCD at f843f27 (``scripts/run_*.sh``, last changed in 1e0fb9d "update
configs": the initial commit's memax weights differ for Herbarium19, ImageNet-100 and
CIFAR-100) and HaiyangZheng/EAGC at 87af6ff (``scripts/SimGCD/train_*.sh``, ViT-B/16 DINO;
``scripts/SimGCD/train_*_dinov2.sh``, DINOv2 ViT-B/14 with 4 registers, in
``EAGC_DINOV2_SCRIPTS``; read again at 030e79d).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class SimGCDScript:
    """What one ``scripts/run_<name>.sh`` of CVMI-Lab/SimGCD passes to ``train.py``."""

    source: str
    memax_weight: float
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-5
    sup_weight: float = 0.35
    warmup_teacher_epochs: int = 30


@dataclass(frozen=True)
class EAGCScript:
    """What one ``scripts/SimGCD/train_<name>.sh`` of HaiyangZheng/EAGC passes (SimGCD + EAGC)."""

    source: str
    memax_weight: float
    eep_weight: float  # beta
    reference_epochs: int
    reference_batch_size: int
    reference_lr: float = 0.02
    aga_weight: float = 0.7
    aperture: float = 2.0
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1.0  # the head's (entangle's lr_head); the backbone's is lr_backbone
    lr_backbone: float = 0.1
    # layers of methods/SimGCD.py's MLP_Head before the DINO head (entangle's head_mlp_layers)
    projection_head_nlayers: int = 1
    weight_decay: float = 5e-5
    sup_weight: float = 0.35
    # entangle's name of the backbone the script trains: DINO ViT-B/16 (methods/SimGCD.py's
    # --backbone_type dino), or DINOv2's vit_base with --dinov2_patch_size 14 and
    # --dinov2_num_register_tokens 4 (its defaults) for --backbone_type dinov2
    model: str = "vit-b16"


def _simgcd(name: str, memax: float) -> SimGCDScript:
    return SimGCDScript(f"CVMI-Lab/SimGCD scripts/run_{name}.sh", memax)


def _eagc(name: str, memax: float, beta: float, ref_epochs: int, ref_batch: int) -> EAGCScript:
    return EAGCScript(
        f"HaiyangZheng/EAGC scripts/SimGCD/train_{name}.sh", memax, beta, ref_epochs, ref_batch
    )


# --dataset_name -> values; the file name part is the script's own (cars is run_cars.sh there)
SIMGCD_SCRIPTS = MappingProxyType(
    {
        "cifar10": _simgcd("cifar10", 1.0),
        "cifar100": _simgcd("cifar100", 4.0),
        "imagenet_100": _simgcd("imagenet100", 1.0),
        "imagenet_1k": _simgcd("imagenet1k", 1.0),
        "cub": _simgcd("cub", 2.0),
        "scars": _simgcd("cars", 1.0),
        "aircraft": _simgcd("aircraft", 1.0),
        "herbarium_19": _simgcd("herb19", 1.0),
    }
)

EAGC_SCRIPTS = MappingProxyType(
    {
        "cifar100": _eagc("cifar100", 2.0, 0.5, 3, 128),
        "imagenet_100": _eagc("imagenet100", 1.0, 0.5, 30, 128),
        "cub": _eagc("cub", 1.0, 0.5, 30, 32),
        "scars": _eagc("scars", 1.0, 3.0, 30, 32),
        "aircraft": _eagc("aircraft", 1.0, 3.0, 30, 32),
        "herbarium_19": _eagc("herb19", 1.0, 0.5, 30, 32),
    }
)


# scripts/SimGCD/train_{cub,scars,aircraft}_dinov2.sh: train_cub.sh's values plus
# --backbone_type dinov2; all three pass --eep_weight 0.5 (the DINO Cars / Aircraft scripts 3)
EAGC_DINOV2_SCRIPTS = MappingProxyType(
    {
        name: EAGCScript(
            f"HaiyangZheng/EAGC scripts/SimGCD/train_{name}_dinov2.sh",
            memax_weight=1.0,
            eep_weight=0.5,
            reference_epochs=30,
            reference_batch_size=32,
            model="vit-b14-reg4-dinov2",
        )
        for name in ("cub", "scars", "aircraft")
    }
)
