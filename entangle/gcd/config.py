"""The settings of a GCD training run (stored in run.json) and how two settings differ."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from entangle.errors import EntangleValueError
from entangle.metrics.clustering import accuracy_protocols


@dataclass
class TrainConfig:
    """Every setting of a GCD training run (stored in run.json)."""

    data: str = "digits"
    old_classes: str | None = None
    labeled_fraction: float = 0.5
    model: str = "digits-mlp"
    vit_backend: str = "auto"
    pretrained: str | None = None
    pretrain_epochs: int = 30
    trainable_blocks: int = 1
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    sup_weight: float = 0.35
    memax_weight: float = 2.0
    warmup_teacher_epochs: int = 5
    eagc: bool = False
    aga: bool = True
    eep: bool = True
    adaptive: bool = True
    aga_weight: float = 0.7
    eep_weight: float = 0.5
    aperture: float | str = 2.0  # or "auto" (docs/calibration.md)
    momentum_mu: float = 0.95
    reference: str | None = None
    reference_epochs: int = 30
    probe_every: int = 1
    attribution: int = 1  # attribute every N-th probed step (docs/attribution.md); 0: off
    probeset_every: int = 10
    probeset_size: int = 512
    soc_k: int = 16
    device: str = "auto"
    seed: int = 0
    save_features: bool = True
    synthetic_overlap: float = 0.5
    # accuracy protocols of each evaluation (v1, v2, v2b; docs/accuracy.md); first = acc_*
    accuracy: tuple[str, ...] = ("v2",)

    def __post_init__(self):
        self.accuracy = accuracy_protocols(self.accuracy)
        self.aperture = _aperture_setting(self.aperture)
        if self.attribution < 0:
            raise EntangleValueError(f"attribution must be >= 0 (0: off), got {self.attribution}")
        if not 0 < self.labeled_fraction <= 1:
            raise EntangleValueError(
                f"labeled_fraction must be in (0, 1], got {self.labeled_fraction}"
            )
        for name in ("epochs", "probe_every", "probeset_every"):
            if getattr(self, name) < 1:
                raise EntangleValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise EntangleValueError(
                f"batch_size must be >= 2 (half labeled, half unlabeled rows), got "
                f"{self.batch_size}"
            )

    def variant(self) -> str:
        """Short name of the EAGC variant: baseline, aga, eep, eagc or eagc-fixed."""
        if not self.eagc or not (self.aga or self.eep):
            return "baseline"
        if self.aga and not self.eep:
            return "aga"
        if self.eep and not self.aga:
            return "eep" if self.adaptive else "eep-fixed"
        return "eagc" if self.adaptive else "eagc-fixed"


def _aperture_setting(value) -> float | str:
    """A positive float or the string ``"auto"``; numeric strings (from a CLI) become floats."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise EntangleValueError(f"aperture must be a positive number or 'auto', got {value!r}")
    return number


# settings that say where a run executes, not what it computes: a run may resume elsewhere
PLACEMENT_FIELDS = ("device",)


def config_differences(stored: dict, config: TrainConfig) -> list[str]:
    """Fields whose value in a run's stored config differs from ``config`` (placement aside)."""
    want = json.loads(json.dumps(dataclasses.asdict(config)))
    keys = (set(stored) | set(want)) - set(PLACEMENT_FIELDS) - {"class_names"}
    return sorted(k for k in keys if stored.get(k) != want.get(k))
