"""The objects one training run holds, built in the recipe's order before its first step.

:func:`assemble` makes (in this order, which fixes every random draw) the run's copies of the
setup's backbone and head, the reference model and EAGC when the variant needs them, the
optimiser and the gradient coordinator, the batch sampler, the start-of-run calibration and
conceptor (written to run.json once), the ProbeSet and the Probe; then it resumes from
``last.pt`` when asked. The loop itself is entangle.gcd.train's.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from entangle.checkpoints import CheckpointError, safe_load
from entangle.coordination import GradientCoordinator
from entangle.data.augment import data_augment
from entangle.data.datasets import GCDData, eval_inputs, train_sampler
from entangle.eagc import EAGC
from entangle.gcd.calibrate import resolve_run_aperture, start_calibration
from entangle.gcd.conceptors import run_conceptor
from entangle.gcd.config import TrainConfig
from entangle.gcd.divergence import NonFiniteWatch
from entangle.gcd.losses import LossConfig
from entangle.gcd.optim import simgcd_optimizer
from entangle.gcd.ranks import Live, OtherRank, Ranks, rank_reference
from entangle.gcd.setup import Setup, labeled_loader
from entangle.nn.distributed import rank
from entangle.nn.features import reference_features
from entangle.nn.prefix import SharedPrefix
from entangle.probing.params import last_block
from entangle.probing.probe import Probe
from entangle.probing.probeset import ProbeSet
from entangle.runs.directory import RunWriter


@dataclass
class TrainingRun:
    """What the loop reads and updates, one owner for each (built by :func:`assemble`).

    Attributes:
        start_epoch: the first epoch still to train (> 0 when resumed from ``last.pt``).
        autocast: a context factory for ``--amp``; ``scaler`` its GradScaler (fp16) or None.
    """

    config: TrainConfig
    run: RunWriter | OtherRank  # rank 0 writes the run; the others read it
    data: GCDData
    device: torch.device
    ranks: Ranks
    backbone: torch.nn.Module
    head: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    eagc: EAGC | None
    live: torch.nn.Module  # Live(backbone, head, shared prefix), DDP-wrapped under torchrun
    samplers: list  # one batch sampler per local rank
    probe: Probe
    loss_config: LossConfig
    augment: Callable
    watch: NonFiniteWatch
    autocast: Callable
    scaler: torch.amp.GradScaler | None
    start_epoch: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.samplers[0])


@dataclass
class _Reference:
    """The reference model's part of a run: the model, EAGC and what EAGC was fitted from."""

    model: tuple | None = None  # (backbone, head) of the reference, when the variant needs it
    eagc: EAGC | None = None
    shared: SharedPrefix | None = None
    labeled: torch.Tensor | None = None  # the reference's features of the labeled samples
    aperture: tuple | None = None  # (aperture, auto_aperture) EAGC was fitted with


def _probe_subset(data: GCDData, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 7)
    return torch.randperm(len(data), generator=g)[: min(size, len(data))]


def _reference_parts(config: TrainConfig, setup: Setup, run, backbone, ranks: Ranks) -> _Reference:
    """The reference model (saved once into the run), the warm start, and EAGC."""
    ref = _Reference()
    if config.needs_reference():
        ref.model = rank_reference(config, setup, run, ranks)
    if config.start_weights() == "reference":
        # the EAGC authors' warm start: the live backbone begins as the reference model (a
        # fresh head over all classes), so at step 0 AGA pulls nothing (docs/protocol.md)
        backbone.load_state_dict(ref.model[0].state_dict())
    if config.eagc:
        data = setup.data
        loader = labeled_loader(data, config.batch_size, setup.device, None, config.seed)
        ref.labeled = reference_features(ref.model[0], [x for x, _ in loader])
        if "calibration" in run.meta:  # resumed: the aperture the run started with
            cal = run.meta["calibration"]
            ref.aperture = (cal["aperture"], cal.get("auto_aperture"))
        else:  # "auto" compares with the reference's unlabeled training features
            ref.aperture = resolve_run_aperture(config, data, ref.labeled, ref.model[0])
        ref.eagc = EAGC.from_features(
            ref.labeled,
            aperture=ref.aperture[0],
            aga_weight=config.aga_weight,
            eep_weight=config.eep_weight,
            momentum=config.momentum_mu,
            aga=config.aga,
            eep=config.eep,
            adaptive=config.adaptive,
        )
        ref.shared = SharedPrefix(backbone, ref.model[0])
    return ref


def _coordinator(config: TrainConfig, backbone, params) -> GradientCoordinator | None:
    """The run's gradient-level coordinator on its ``coordinator_params`` set, or None."""
    settings = config.coordinator_config()
    if settings is None:
        return None
    if settings.params == "backbone":
        params = [p for p in backbone.parameters() if p.requires_grad]
    return GradientCoordinator(params, settings)


def _probe(config, data, run, backbone, params, ref: _Reference, coordinator, loss_config):
    """The run's Probe with its ProbeSet; writes the calibration and conceptor once."""
    subset = _probe_subset(data, config.probeset_size, config.seed)
    if "calibration" not in run.meta:
        model = ref.model[0] if ref.model is not None else backbone
        resolved = ref.aperture if ref.eagc is not None else None
        cal = start_calibration(config, data, subset, model, ref.labeled, resolved)
        run.write_meta("calibration", cal)
    aperture = run.meta["calibration"]["aperture"]
    # step energies: EEP's conceptor, or (baseline) the starting weights' own, fixed
    known_subspace, conceptor_meta = run_conceptor(
        data, backbone, ref.eagc, aperture=aperture, batch_size=config.batch_size, seed=config.seed
    )
    if "conceptor" not in run.meta:
        run.write_meta("conceptor", conceptor_meta)
    probeset = ProbeSet(
        backbone,
        eval_inputs(data, subset),
        data.labeled[subset],
        data.novel[subset],
        every=config.probeset_every,
        k=min(config.soc_k, int(data.labeled[subset].sum()) - 1),
        aperture=aperture,
    )
    return Probe(
        {"last_block": last_block(backbone), "all": params},
        every=config.probe_every,
        run=run,
        eagc=ref.eagc,
        coordinator=coordinator,
        known_subspace=known_subspace,
        probeset=probeset,
        attribution=config.attribution,
        attribution_group="last_block",
        attribution_rows=config.attribution_rows or None,
        logit_temperature=loss_config.student_temperature,
    )


def assemble(config: TrainConfig, setup: Setup, run, resume: bool, ranks: Ranks) -> TrainingRun:
    """Build a run's objects from ``setup`` (left unmodified); resume from ``last.pt``.

    ``run`` is the RunWriter on rank 0, an :class:`OtherRank` view elsewhere.
    """
    data, device = setup.data, setup.device
    backbone, head = copy.deepcopy(setup.backbone), copy.deepcopy(setup.head)
    ref = _reference_parts(config, setup, run, backbone, ranks)
    live = Live(backbone, head, ref.shared)
    if ranks.distributed:  # after the start weights: DDP broadcasts rank 0's at construction
        live = DistributedDataParallel(
            live, device_ids=[device.index] if device.type == "cuda" else None
        )
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    # SimGCD's optimiser: no weight decay on biases / 1-D params, cosine stepped per epoch
    # (with --lr-head the head's groups at their own lr, as the EAGC authors' scripts)
    opt, sched = simgcd_optimizer(
        [backbone],
        head=head,
        lr=ranks.lr(config),
        lr_head=None if config.lr_head is None else ranks.lr(config, config.lr_head),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
    )
    coordinator = _coordinator(config, backbone, params)
    samplers = [
        train_sampler(data, config.batch_size, seed=config.seed, rank=r, world_size=ranks.count)
        for r in ranks.local
    ]
    loss_config = config.loss_config()
    probe = _probe(config, data, run, backbone, params, ref, coordinator, loss_config)
    augment = data_augment(data)
    start_epoch = 0
    last_ckpt = run.checkpoint_path("last")
    if resume and last_ckpt.exists():
        start_epoch = _resume_from(last_ckpt, backbone, head, opt, sched, ref.eagc)
    autocast, scaler = amp_context(config.amp, setup.device)
    return TrainingRun(
        config=config,
        run=run,
        data=data,
        device=device,
        ranks=ranks,
        backbone=backbone,
        head=head,
        opt=opt,
        sched=sched,
        eagc=ref.eagc,
        live=live,
        samplers=samplers,
        probe=probe,
        loss_config=loss_config,
        augment=augment,
        watch=NonFiniteWatch(setup.device),
        autocast=autocast,
        scaler=scaler,
        start_epoch=start_epoch,
    )


def _resume_from(path: Path, backbone, head, opt, sched, eagc) -> int:
    """Load ``last.pt`` into the run's objects; the first epoch still to train."""
    state = safe_load(path)
    try:
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if eagc is not None:
            saved = state["eagc"]
            if saved.get("last_weights_by_rank") is not None:  # a DDP run: this rank's own
                saved = saved | {"last_weights": saved["last_weights_by_rank"][rank()]}
            eagc.load_state_dict(saved)
        return int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} does not fit this run ({type(exc).__name__}: {detail}); delete it to "
            "restart the run from its first epoch, or choose another run directory"
        ) from None


def amp_context(amp: str, device: torch.device):
    """``(autocast factory, GradScaler or None)`` for ``--amp off|fp16|bf16``.

    fp16 scales the loss (a ``GradScaler`` handed to EAGC and the Probe, which unscale their
    metrics); bf16 needs no scaler.
    """
    if amp == "off":
        return contextlib.nullcontext, None
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler
