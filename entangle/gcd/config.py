"""The settings of a GCD training run (stored in run.json) and how two settings differ."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from entangle.coordination import AGGREGATORS, CoordinatorConfig
from entangle.defaults import (
    AGA_WEIGHT,
    APERTURE,
    EEP_WEIGHT,
    LABELED_FRACTION,
    SIMGCD_LOSS,
    SOC_K,
    with_simgcd_loss,
)
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig
from entangle.metrics.clustering import DEFAULT_PROTOCOL, accuracy_protocols

# the SimGCD objective's defaults have one home, defaults.SimGCDLoss (SIMGCD_LOSS); a
# gradient-level coordinator's, CoordinatorConfig
_COORD = CoordinatorConfig()
# `none` (plain SimGCD), `eagc` (feature level), or a torchjd aggregator (docs/coordinators.md)
COORDINATORS = ("none", "eagc", *AGGREGATORS)

# SimGCD warms the teacher temperature up over 30 of its 200 epochs (scripts/run_*.sh)
SIMGCD_WARMUP_SHARE = SIMGCD_LOSS.warmup_teacher_epochs / 200
STARTS = ("auto", "pretrained", "reference")


@dataclass
@with_simgcd_loss(after="weight_decay")
class TrainConfig:
    """Every setting of a GCD training run (stored in run.json).

    The loss settings (``sup_weight`` .. ``infonce_temperature``) default to SimGCD's, the
    optimiser to its scripts (SGD lr 0.1, momentum 0.9, weight decay 5e-5, batch 128), the
    reference model to the EAGC authors' (see docs/protocol.md).

    Notable settings:
        warmup_teacher_epochs: epochs of the teacher-temperature warm-up; None scales
            SimGCD's 30 of 200 epochs to this run: ``max(1, round(epochs * 30 / 200))``
            (200 epochs -> 30, 12 -> 2, 6 -> 1), see :meth:`teacher_warmup_epochs`.
        start: the live model's initial backbone weights: ``"pretrained"`` (the paper's
            SimGCD baseline), ``"reference"`` (the reference model's, the EAGC authors'
            warm start) or ``"auto"``: reference for EAGC runs, pretrained for the baseline.
        reference_lr, reference_batch_size, reference_weight_decay, reference_epochs: the
            reference model's training (the authors' scripts: 0.02, 32, 1e-4, 30).
        coordinator: ``none``, ``eagc`` (sets ``eagc``) or a gradient-level aggregator of
            :data:`COORDINATORS`; ``coordinator_params`` and the aggregator settings
            (``cagrad_c`` ...) are :class:`~entangle.coordination.CoordinatorConfig`'s.
    """

    data: str = "digits"
    preset: str | None = None  # --preset simgcd|eagc|eagc-dinov2: where the values came from
    old_classes: str | None = None
    labeled_fraction: float = LABELED_FRACTION
    model: str = "digits-mlp"
    vit_backend: str = "auto"
    pretrained: str | None = None
    pretrain_epochs: int = 30
    trainable_blocks: int = 1
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    # the head's own lr (the EAGC authors' --lr; their --lr_backbone is `lr`); None: `lr`
    # for every parameter, as SimGCD (see entangle.gcd.optim.simgcd_optimizer)
    lr_head: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-5
    # here: the SimGCD objective's fields, defaults.SimGCDLoss's (@with_simgcd_loss), but
    # train's own warm-up: None scales SimGCD's 30 of 200 epochs to the run
    warmup_teacher_epochs: int | None = None
    start: str = "auto"
    eagc: bool = False
    aga: bool = True
    eep: bool = True
    adaptive: bool = True
    aga_weight: float = AGA_WEIGHT
    eep_weight: float = EEP_WEIGHT
    aperture: float | str = APERTURE  # or "auto" / "jaeger" (docs/calibration.md)
    momentum_mu: float = 0.95
    coordinator: str = "none"
    coordinator_params: str = _COORD.params
    cagrad_c: float = _COORD.cagrad_c
    mgda_epsilon: float = _COORD.mgda_epsilon
    mgda_max_iters: int = _COORD.mgda_max_iters
    alignedmtl_scale_mode: str = _COORD.alignedmtl_scale_mode
    nashmtl_max_norm: float = _COORD.nashmtl_max_norm
    nashmtl_update_weights_every: int = _COORD.nashmtl_update_weights_every
    nashmtl_optim_niter: int = _COORD.nashmtl_optim_niter
    gradvac_beta: float = _COORD.gradvac_beta
    fairgrad_alpha: float = _COORD.fairgrad_alpha
    reference: str | None = None
    reference_epochs: int = 30
    reference_lr: float = 0.02
    reference_batch_size: int = 32
    reference_weight_decay: float = 1e-4
    probe_every: int = 1
    attribution: int = 1  # attribute every N-th probed step (docs/attribution.md); 0: off
    # rows attributed per attributed step, a seeded subsample without the double-backward graph
    # (docs/attribution.md, "A subsample of rows"); 0: every row
    attribution_rows: int = 0
    probeset_every: int = 10
    probeset_size: int = 512
    soc_k: int = SOC_K
    device: str = "auto"
    seed: int = 0
    save_features: bool = True
    synthetic_overlap: float = 0.5
    # accuracy protocols of each evaluation (v1, v2, v2b; docs/accuracy.md); first = acc_*
    accuracy: tuple[str, ...] = (DEFAULT_PROTOCOL,)
    # what happens after nan_limit consecutive non-finite losses: "stop" (the run stays
    # incomplete, the reason in STOPPED) or "continue" (docs/reliability.md)
    on_nan: str = "stop"
    amp: str = "off"  # off | fp16 (GradScaler) | bf16: autocast of forward and losses
    nan_limit: int = 5
    # DataLoader worker processes decoding image batches (None: default_workers(), from the
    # cores); the batches do not depend on it, so a run may resume with another count
    workers: int | None = None
    # side of the crops image data is trained and evaluated at (SimGCD train.py and the EAGC
    # authors' methods/SimGCD.py: args.image_size = 224); vectors and digits ignore it
    image_size: int = 224
    # Linear layers of the EAGC code's MLP_Head (models/heads.py ReLUMLP, D -> D) in front of
    # the GCD head (--projection_head_nlayers in methods/SimGCD.py, 1 in its scripts); 0:
    # none, SimGCD's bare DINO head. The DINO head keeps its 3-layer projector either way.
    head_mlp_layers: int = 0

    def __post_init__(self):
        self.accuracy = accuracy_protocols(self.accuracy)
        self.aperture = _aperture_setting(self.aperture)
        if self.attribution < 0:
            raise EntangleValueError(f"attribution must be >= 0 (0: off), got {self.attribution}")
        if self.attribution_rows < 0:
            raise EntangleValueError(
                f"attribution_rows must be >= 0 (0: every row), got {self.attribution_rows}"
            )
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EntangleValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise EntangleValueError(
                    f"{name} must be a finite number >= 0, got {value}; pass --"
                    f"{name.replace('_', '-')} with a value such as {getattr(TrainConfig, name)}"
                )
        if self.lr_head is not None and not (
            isinstance(self.lr_head, (int, float))
            and not isinstance(self.lr_head, bool)
            and math.isfinite(self.lr_head)
            and self.lr_head >= 0
        ):
            raise EntangleValueError(
                f"lr_head must be a finite number >= 0 or unset (= lr), got {self.lr_head!r}"
            )
        if isinstance(self.head_mlp_layers, bool) or self.head_mlp_layers not in range(9):
            raise EntangleValueError(
                f"head_mlp_layers must be 0..8 (0: SimGCD's head; the EAGC scripts: 1), got "
                f"{self.head_mlp_layers!r}"
            )
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 0):
            raise EntangleValueError(f"workers must be >= 0 (0: none), got {self.workers!r}")
        if isinstance(self.image_size, bool) or not 16 <= self.image_size <= 1024:
            raise EntangleValueError(
                f"image_size must be 16..1024 pixels (SimGCD: 224), got {self.image_size!r}"
            )
        if self.amp not in ("off", "fp16", "bf16"):
            raise EntangleValueError(f"amp must be 'off', 'fp16' or 'bf16', got {self.amp!r}")
        if self.on_nan not in ("stop", "continue"):
            raise EntangleValueError(f"on_nan must be 'stop' or 'continue', got {self.on_nan!r}")
        if not 0 < self.labeled_fraction <= 1:
            raise EntangleValueError(
                f"labeled_fraction must be in (0, 1], got {self.labeled_fraction}"
            )
        for name in ("epochs", "probe_every", "probeset_every", "nan_limit"):
            if getattr(self, name) < 1:
                raise EntangleValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise EntangleValueError(
                f"batch_size must be >= 2 (half labeled, half unlabeled rows), got "
                f"{self.batch_size}"
            )
        if self.start not in STARTS:
            raise EntangleValueError(
                f"start must be one of {', '.join(STARTS)}, got {self.start!r}"
            )
        if self.reference_epochs < 1 or self.reference_batch_size < 1:
            raise EntangleValueError(
                "reference_epochs and reference_batch_size must be >= 1, got "
                f"{self.reference_epochs} and {self.reference_batch_size}"
            )
        self.loss_config()  # checks the loss settings
        self._resolve_coordinator()

    def _resolve_coordinator(self) -> None:
        if self.coordinator not in COORDINATORS:
            raise EntangleValueError(
                f"coordinator must be one of {', '.join(COORDINATORS)}, got {self.coordinator!r}"
            )
        if self.coordinator == "eagc":
            self.eagc = True  # `--coordinator eagc` is `--eagc`; `--eagc` alone keeps "none"
        elif self.eagc and self.coordinator != "none":
            raise EntangleValueError(
                f"coordinator {self.coordinator!r} is gradient-level and cannot be combined "
                "with EAGC; use --coordinator eagc or turn EAGC off"
            )
        self.coordinator_config()  # checks the aggregator settings

    def coordinator_config(self) -> CoordinatorConfig | None:
        """The gradient-level coordinator's settings, or None (``none`` / ``eagc``)."""
        if self.coordinator not in AGGREGATORS:
            return None
        names = [f.name for f in dataclasses.fields(CoordinatorConfig) if f.name != "name"]
        kwargs = {n: getattr(self, n if n != "params" else "coordinator_params") for n in names}
        return CoordinatorConfig(name=self.coordinator, **kwargs)

    def teacher_warmup_epochs(self) -> int:
        """Warm-up epochs of the teacher temperature: the setting, or SimGCD's share of them.

        SimGCD warms up over 30 of its 200 epochs; ``None`` keeps that share of this run:
        ``max(1, round(epochs * 30 / 200))``.
        """
        if self.warmup_teacher_epochs is not None:
            return self.warmup_teacher_epochs
        return max(1, round(self.epochs * SIMGCD_WARMUP_SHARE))

    def loss_config(self) -> LossConfig:
        """The objective's settings (:class:`~entangle.gcd.losses.LossConfig`) of this run."""
        return LossConfig.of(self, warmup_teacher_epochs=self.teacher_warmup_epochs())

    def start_weights(self) -> str:
        """``"pretrained"`` or ``"reference"``: ``start`` with ``"auto"`` resolved.

        ``"auto"`` follows each method's own protocol: the EAGC authors start the live
        backbone from the reference model, the paper's SimGCD baseline from pretrained weights.
        """
        if self.start != "auto":
            return self.start
        return "pretrained" if self._own_start_pretrained() else "reference"

    def _own_start_pretrained(self) -> bool:
        # gradient-level coordinators start where the plain baseline does
        return self.method() == "baseline" or self.method() in AGGREGATORS

    def needs_reference(self) -> bool:
        """Whether the run needs the reference model (EAGC, or a start from its weights)."""
        return self.eagc or self.start_weights() == "reference"

    def method(self) -> str:
        """Short name of the EAGC switches (baseline, aga, eep, eep-fixed, eagc, eagc-fixed), or
        the gradient-level coordinator's name (``pcgrad`` ...)."""
        if self.coordinator in AGGREGATORS:
            return self.coordinator
        if not self.eagc or not (self.aga or self.eep):
            return "baseline"
        if self.aga and not self.eep:
            return "aga"
        if self.eep and not self.aga:
            return "eep" if self.adaptive else "eep-fixed"
        return "eagc" if self.adaptive else "eagc-fixed"

    def variant(self) -> str:
        """Short name of the run: :meth:`method`, plus the start where it is not the method's own.

        ``baseline`` starts from pretrained weights, every EAGC variant from the reference
        model; ``baseline-reference`` is the baseline from the reference model's weights,
        ``eagc-pretrained`` (etc.) an EAGC variant from the pretrained ones.
        """
        method = self.method()
        own = "pretrained" if self._own_start_pretrained() else "reference"
        start = self.start_weights()
        return method if start == own else f"{method}-{start}"


def _aperture_setting(value) -> float | str:
    """A positive float, ``"auto"`` or ``"jaeger"``; numeric strings (from a CLI) become floats."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "jaeger"):
        return value.strip().lower()
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise EntangleValueError(
            f"aperture must be a positive number, 'auto' or 'jaeger', got {value!r}"
        )
    return number


# each method's EAGC switches; `eep-fixed` completes the set TrainConfig.method() names
_METHODS: dict[str, dict[str, bool]] = {
    "baseline": {"eagc": False, "aga": True, "eep": True, "adaptive": True},
    "aga": {"eagc": True, "aga": True, "eep": False, "adaptive": True},
    "eep": {"eagc": True, "aga": False, "eep": True, "adaptive": True},
    "eep-fixed": {"eagc": True, "aga": False, "eep": True, "adaptive": False},
    "eagc": {"eagc": True, "aga": True, "eep": True, "adaptive": True},
    "eagc-fixed": {"eagc": True, "aga": True, "eep": True, "adaptive": False},
}
# every name TrainConfig.variant() gives -> the settings that make it: each method from its
# own start (the baseline from the pretrained weights, EAGC from the reference model), and
# from the other start (`baseline-reference`, `eagc-pretrained`, ...)
VARIANTS: dict[str, dict] = {name: sw | {"start": "auto"} for name, sw in _METHODS.items()}
VARIANTS["baseline-reference"] = _METHODS["baseline"] | {"start": "reference"}
VARIANTS |= {
    f"{name}-pretrained": sw | {"start": "pretrained"}
    for name, sw in _METHODS.items()
    if name != "baseline"
}

# settings that say where a run executes, not what it computes: a run may resume elsewhere
# where and in which precision it computes: a run may resume on another device or --amp
PLACEMENT_FIELDS = ("device", "amp", "workers")
# what to do when training diverges: a stopped run may resume with another policy
POLICY_FIELDS = ("on_nan", "nan_limit")
# float settings that must be finite and >= 0 (lr nan / inf / -1 are refused up front)
_NON_NEGATIVE = (
    "lr",
    "momentum",
    "weight_decay",
    "sup_weight",
    "memax_weight",
    "aga_weight",
    "eep_weight",
    "momentum_mu",
    "synthetic_overlap",
    "cagrad_c",
    "mgda_epsilon",
    "nashmtl_max_norm",
    "gradvac_beta",
    "fairgrad_alpha",
)


def run_config(config: TrainConfig) -> dict:
    """What run.json records of ``config``: every field, ``start`` resolved, the objective.

    ``start`` holds the weights the run started from (``"pretrained"`` / ``"reference"``,
    never ``"auto"``), ``variant`` the run's short name and ``loss`` the
    :class:`~entangle.gcd.losses.LossConfig` it trained with (warm-up epochs resolved).
    """
    return dataclasses.asdict(config) | {
        "start": config.start_weights(),
        "variant": config.variant(),
        "loss": dataclasses.asdict(config.loss_config()),
    }


def config_differences(stored: dict, config: TrainConfig) -> list[str]:
    """Fields whose value in a run's stored config differs from ``config`` (placement aside)."""
    want = json.loads(json.dumps(run_config(config)))
    keys = (set(stored) | set(want)) - set(PLACEMENT_FIELDS) - set(POLICY_FIELDS) - {"class_names"}
    # a run written before these settings existed ran them at their defaults
    keys -= {k for k in ADDED_FIELDS if k not in stored and want.get(k) == _DEFAULT[k]}
    return sorted(k for k in keys if stored.get(k) != want.get(k))


COORDINATOR_FIELDS = ("coordinator", "coordinator_params") + tuple(
    f.name for f in dataclasses.fields(CoordinatorConfig) if f.name not in ("name", "params")
)
# fields added after runs were first recorded: absent from an older run.json = the default
ADDED_FIELDS = (*COORDINATOR_FIELDS, "image_size", "lr_head", "head_mlp_layers")
_DEFAULT = {k: getattr(TrainConfig, k) for k in ADDED_FIELDS}
