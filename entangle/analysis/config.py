"""The settings of ``entangle analyze`` (stored in each run's run.json).

Apart from the analysis itself (analysis/run.py) so that the ``analyze`` command's options
read their defaults from these fields without importing the analysis, the checkpoint
loaders and the models (``--help`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass

from entangle.defaults import (
    AGA_WEIGHT,
    APERTURE,
    EEP_WEIGHT,
    LABELED_FRACTION,
    SOC_K,
    with_simgcd_loss,
)
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig
from entangle.metrics.clustering import DEFAULT_PROTOCOL, accuracy_protocols


@dataclass
@with_simgcd_loss()
class AnalyzeConfig:
    """Settings of ``entangle analyze`` (stored in each run's run.json)."""

    data: str = "digits"
    old_classes: str | None = None
    labeled_fraction: float = LABELED_FRACTION
    # a file of the user's own labeled samples (indices or names), instead of a random split
    labeled_split: str | None = None
    reference: str | None = None
    grad_batches: int = 4
    batch_size: int = 64
    device: str = "auto"
    max_samples: int | None = None
    tsne: bool = True
    grad: bool = True
    kmeans: bool = True
    eagc: bool = True
    report: bool = True
    trust_checkpoint: bool = False
    model: str | None = None
    seed: int = 0
    soc_k: int = SOC_K
    aperture: float = APERTURE
    eep_weight: float = EEP_WEIGHT
    aga_weight: float = AGA_WEIGHT
    tsne_max_points: int = 5000
    # accuracy protocols (v1, v2, v2b; docs/accuracy.md); the first fills acc_all/old/new
    accuracy: tuple[str, ...] = (DEFAULT_PROTOCOL,)
    # checkpoint layout forced instead of detected, and a separate head file (docs/checkpoints.md)
    checkpoint_format: str | None = None
    head_file: str | None = None
    # then the objective the gradient diagnostics differentiate: defaults.SimGCDLoss's fields
    # (@with_simgcd_loss), SimGCD's defaults

    def __post_init__(self):
        self.accuracy = accuracy_protocols(self.accuracy)
        if self.grad_batches < 0 or self.batch_size < 2:
            raise EntangleValueError(
                f"grad_batches must be >= 0 and batch_size >= 2, got {self.grad_batches} and "
                f"{self.batch_size}"
            )
        self.loss_config()  # checks the loss settings

    def loss_config(self) -> LossConfig:
        """The objective of the gradient diagnostics (the training run's, for exact numbers)."""
        return LossConfig.of(self)
