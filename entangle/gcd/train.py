"""The GCD recipe's training loop: one readable loop with a Probe and optional EAGC.

``prepare(config)`` (entangle.gcd.setup) builds the data, the (pretrained, prefix-frozen)
backbone and a fresh head; ``train(config, run_dir, setup)`` trains from exactly those
weights, so a baseline and an EAGC run made from the same ``Setup`` start from identical
weights (the reference code compares runs from different starts, see docs/protocol.md).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from entangle.checkpoints import CheckpointError, safe_load
from entangle.checkpoints import save_checkpoint as save_model_checkpoint
from entangle.coordination import GradientCoordinator
from entangle.data.augment import default_augment
from entangle.data.datasets import GCDData, eval_inputs, make_batch, train_sampler
from entangle.eagc import EAGC, reference_features
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.gcd.calibrate import resolve_run_aperture, start_calibration
from entangle.gcd.conceptors import run_conceptor
from entangle.gcd.config import PLACEMENT_FIELDS, TrainConfig, config_differences, run_config
from entangle.gcd.divergence import NonFiniteWatch
from entangle.gcd.evaluate import evaluate, run_summary
from entangle.gcd.losses import gcd_losses
from entangle.gcd.optim import simgcd_optimizer
from entangle.gcd.setup import (
    Setup,
    ensure_reference,
    labeled_loader,
    prepare,
    resolve_device,
)
from entangle.nn.prefix import SharedPrefix
from entangle.probing.evaluation import write_epoch
from entangle.probing.params import last_block
from entangle.probing.probe import Probe
from entangle.probing.probeset import ProbeSet
from entangle.runs.directory import RunReader, RunWriter

# re-exported: the recipe's public names all live at entangle.gcd.train
__all__ = [
    "PLACEMENT_FIELDS",
    "Setup",
    "TrainConfig",
    "check_run_dir",
    "config_differences",
    "ensure_reference",
    "evaluate",
    "prepare",
    "resolve_device",
    "run_summary",
    "train",
]


def _probe_subset(data: GCDData, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 7)
    return torch.randperm(len(data), generator=g)[: min(size, len(data))]


def train(
    config: TrainConfig,
    run_dir,
    setup: Setup | None = None,
    *,
    name: str | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """Train one GCD run, probing every ``config.probe_every`` steps; resumable.

    Args:
        config: the settings.
        run_dir: the run directory; an unfinished run there is resumed from its last
            checkpoint (records of the abandoned tail are superseded step by step).
        setup: data and initial weights (``prepare(config)`` when None); not modified.
        name: display name of the run.
        on_epoch: called with ``(epoch, epoch_record)`` after each evaluation.
        on_step: called with ``(step, steps_total)`` after each optimiser step.

    Returns:
        the summary written to DONE (last epoch's accuracies, mean conflict, GDC, SOC).
    """
    resume = check_run_dir(config, run_dir)  # before prepare(): a mismatch fails at once
    setup = setup or prepare(config)
    run_dir = Path(run_dir)
    run = RunWriter(
        run_dir,
        config=run_config(config) | {"class_names": setup.data.class_names},
        seed=config.seed,
        device=str(setup.device),
        name=name,
        resume=resume,
    )
    with run:  # closes the record files if training raises; DONE only on success
        return _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step)


def check_run_dir(config: TrainConfig, run_dir) -> bool:
    """Whether ``run_dir`` holds an unfinished run of ``config`` to resume (False: none yet).

    Raises:
        EntangleValueError: the directory is a file, holds a finished run, or a run with
            other settings.
    """
    run_dir = Path(run_dir)
    try:  # created now, so a read-only place or a too-long name fails before pretraining
        if run_dir.exists() and not run_dir.is_dir():
            raise EntangleValueError(
                f"{run_dir} is a file, not a run directory; choose a new or unfinished run "
                "directory"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EntangleValueError(
            f"cannot create the run directory {run_dir} ({exc.strerror or exc}); choose "
            "another, writable location"
        ) from None
    if not (run_dir / "run.json").exists():
        return False
    if (run_dir / "DONE").exists():
        raise EntangleValueError(
            f"{run_dir} holds a finished run (DONE exists); choose a new run directory"
        )
    differ = config_differences(RunReader(run_dir).config or {}, config)
    if differ:
        raise EntangleValueError(
            f"{run_dir} holds a run started with other settings ({', '.join(differ)} "
            "differ); resume it with the same settings or choose another run directory"
        )
    return True


def _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step) -> dict:
    device, data = setup.device, setup.data
    backbone, head = copy.deepcopy(setup.backbone), copy.deepcopy(setup.head)
    eagc = reference = shared = ref_labeled = resolved = None
    if config.needs_reference():
        reference = ensure_reference(config, setup)
        if not run.checkpoint_path("reference").exists():
            save_model_checkpoint(
                run.checkpoint_path("reference"), *reference, meta={"role": "reference"}
            )
    if config.start_weights() == "reference":
        # the EAGC authors' warm start: the live backbone begins as the reference model (a
        # fresh head over all classes), so at step 0 AGA pulls nothing (docs/protocol.md)
        backbone.load_state_dict(reference[0].state_dict())
    if config.eagc:
        loader = labeled_loader(data, config.batch_size, device, None, config.seed)
        ref_labeled = reference_features(reference[0], [x for x, _ in loader])
        if "calibration" in run.meta:  # resumed: the aperture the run started with
            cal = run.meta["calibration"]
            resolved = (cal["aperture"], cal["auto_aperture"])
        else:  # "auto" compares with the reference's unlabeled training features
            resolved = resolve_run_aperture(config, data, ref_labeled, reference[0])
        eagc = EAGC.from_features(
            ref_labeled,
            aperture=resolved[0],
            aga_weight=config.aga_weight,
            eep_weight=config.eep_weight,
            momentum=config.momentum_mu,
            aga=config.aga,
            eep=config.eep,
            adaptive=config.adaptive,
        )
        shared = SharedPrefix(backbone, reference[0])
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    # SimGCD's optimiser: no weight decay on biases / 1-D params, cosine stepped per epoch
    opt, sched = simgcd_optimizer(
        (backbone, head),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
    )
    coordinator = _coordinator(config, backbone, params)
    sampler = train_sampler(data, config.batch_size, seed=config.seed)
    steps_per_epoch = len(sampler)
    loss_config = config.loss_config()
    subset = _probe_subset(data, config.probeset_size, config.seed)
    if "calibration" not in run.meta:
        model = reference[0] if reference is not None else backbone
        cal = start_calibration(
            config, data, subset, model, ref_labeled, resolved if eagc is not None else None
        )
        run.write_meta("calibration", cal)
    # step energies: EEP's conceptor, or (baseline) the starting weights' own, fixed
    known_subspace, conceptor_meta = run_conceptor(
        data,
        backbone,
        eagc,
        aperture=run.meta["calibration"]["aperture"],
        batch_size=config.batch_size,
        seed=config.seed,
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
        aperture=run.meta["calibration"]["aperture"],
    )
    probe = Probe(
        {"last_block": last_block(backbone), "all": params},
        every=config.probe_every,
        run=run,
        eagc=eagc,
        coordinator=coordinator,
        known_subspace=known_subspace,
        probeset=probeset,
        attribution=config.attribution,
        attribution_group="last_block",
        logit_temperature=loss_config.student_temperature,
    )
    augment = default_augment(data.input_kind)

    start_epoch = 0
    last_ckpt = run.checkpoint_path("last")
    if resume and last_ckpt.exists():
        start_epoch = _resume_from(last_ckpt, backbone, head, opt, sched, eagc)

    watch = NonFiniteWatch(device)
    autocast, scaler = amp_context(config.amp, device)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        backbone.train()
        head.train()
        sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
        for i, rows in enumerate(sampler):
            step = epoch * steps_per_epoch + i
            probe.set_step(step)  # keeps `every` and record steps aligned across resumes
            probe.set_epoch(epoch)
            batch = make_batch(data, rows, augment, generator)
            views = batch["views"].to(device)
            labeled = batch["labeled"].to(device)
            labeled2 = labeled.repeat(2)
            novel2 = batch["novel"].to(device).repeat(2)
            with probe.attribution_forward(), autocast():  # math attention: attribution
                if shared is not None:  # double-backwards
                    z, z_ref = shared(views)
                    z = eagc.coordinate(z, labeled2, z_ref, scaler=scaler)
                else:
                    z = backbone(views)
                proj, logits = head(z)
                sup, unsup, _ = gcd_losses(
                    proj,
                    logits,
                    batch["labels"].to(device),
                    labeled,
                    epoch=epoch,
                    config=loss_config,
                )
            opt.zero_grad(set_to_none=True)
            probe.backward(
                sup,
                unsup,
                features=z,
                labeled=labeled2,
                novel=novel2,
                logits=logits,
                targets=batch["labels"].to(device).repeat(2),
                index=batch["index"].to(device).repeat(2),
                scaler=scaler,
            )
            watch.update(sup, unsup)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if on_step is not None:
                on_step(step + 1, config.epochs * steps_per_epoch)

        sched.step()
        throughput = epoch_throughput(started, steps_per_epoch, config.batch_size, device)
        diverged = watch.read()  # the epoch's one look at the losses
        watch.reset()
        if diverged >= config.nan_limit and config.on_nan == "stop":
            reason = (
                f"{diverged} consecutive non-finite losses in epoch {epoch} (limit "
                f"{config.nan_limit}): training diverged"
            )
            run.stop(reason, epoch=epoch)
            raise EntangleRuntimeError(
                f"{run_dir}: {reason}; the run is left incomplete (reason in STOPPED). Lower "
                "--lr and start a new run directory, or rerun with --on-nan continue"
            )
        record, arrays = evaluate(
            backbone,
            head,
            data,
            device,
            accuracy=config.accuracy,
            k=config.soc_k,
            aperture=run.meta["calibration"]["aperture"],
        )
        record["nonfinite_loss_run"] = diverged
        record |= throughput
        record = write_epoch(
            run,
            epoch,
            (epoch + 1) * steps_per_epoch,
            record,
            arrays if config.save_features else None,
        )
        state = {
            "backbone": backbone.state_dict(),
            "head": head.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
        }
        if eagc is not None:
            state["eagc"] = eagc.state_dict()
        # the model alone, in entangle's checkpoint format, for `entangle analyze`
        save_model_checkpoint(
            run.checkpoint_path("model"),
            backbone,
            head,
            # the objective too: analyze says when its gradients use another one
            meta={"epoch": epoch, "data": config.data, "loss": dataclasses.asdict(loss_config)},
        )
        # last.pt is written last: it commits the epoch, so a run resumed after a kill
        # anywhere before it redoes the whole epoch and DONE implies final-epoch artefacts
        run.save_checkpoint("last", state)
        if on_epoch is not None:
            on_epoch(epoch, record)

    summary = run_summary(RunReader(run_dir))
    run.finish(summary)
    return summary


def _coordinator(config: TrainConfig, backbone, params) -> GradientCoordinator | None:
    """The run's gradient-level coordinator on its ``coordinator_params`` set, or None."""
    settings = config.coordinator_config()
    if settings is None:
        return None
    if settings.params == "backbone":
        params = [p for p in backbone.parameters() if p.requires_grad]
    return GradientCoordinator(params, settings)


def _resume_from(path: Path, backbone, head, opt, sched, eagc) -> int:
    """Load ``last.pt`` into the run's objects; the first epoch still to train."""
    state = safe_load(path)
    try:
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if eagc is not None:
            eagc.load_state_dict(state["eagc"])
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
    import contextlib

    if amp == "off":
        return contextlib.nullcontext, None
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


# epoch-record keys that vary with the wall clock (equal runs differ in these alone)
WALL_CLOCK_KEYS = ("time", "train_images_per_s", "train_step_s", "peak_gpu_memory_mib")


def epoch_throughput(started: float, steps: int, batch_size: int, device: torch.device) -> dict:
    """The epoch's training speed: samples/s, wall seconds per step, peak GPU memory.

    Measured from ``started`` (``time.perf_counter``) to now, after one device sync; covers
    the training steps only (evaluation follows). ``peak_gpu_memory_mib`` is ``None`` on CPU.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # note: the epoch's one CPU-GPU sync for timing
    seconds = max(time.perf_counter() - started, 1e-9)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "train_images_per_s": steps * batch_size / seconds,
        "train_step_s": seconds / max(steps, 1),
        "peak_gpu_memory_mib": peak,
    }
