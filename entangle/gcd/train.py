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
from entangle.nn.distributed import (
    barrier,
    broadcast_module,
    broadcast_object,
    global_max,
    is_main_process,
    rank,
    world_size,
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
    shards: int = 1,
) -> dict:
    """Train one GCD run, probing every ``config.probe_every`` steps; resumable.

    Under ``torchrun`` (torch.distributed initialised, W processes) it trains with
    DistributedDataParallel as SimGCD's train_mp.py does: each rank draws its own
    ``config.batch_size`` rows (the distributed weighted sampler), computes its own losses,
    and the gradients are averaged; the learning rate follows train_mp's linear scaling rule
    ``lr * batch_size * W / 128``. Rank 0 evaluates and writes the run; the probe's gradient
    metrics are of the all-reduced gradients. ``shards=W`` replays the same W ranks' batches
    in one process (each shard its own losses, their mean backpropagated): the records a
    W-process run writes, computed on one device (docs/distributed.md).

    Args:
        config: the settings.
        run_dir: the run directory; an unfinished run there is resumed from its last
            checkpoint (records of the abandoned tail are superseded step by step).
        setup: data and initial weights (``prepare(config)`` when None); not modified.
        name: display name of the run.
        on_epoch: called with ``(epoch, epoch_record)`` after each evaluation.
        on_step: called with ``(step, steps_total)`` after each optimiser step (on every
            rank; ``on_epoch`` on rank 0 only, where the evaluation runs).
        shards: single-process replay of this many ranks (1: none; must be 1 under DDP).

    Returns:
        the summary written to DONE (last epoch's accuracies, mean conflict, GDC, SOC).
    """
    ranks = _Ranks.current(config, shards)
    # before prepare(): a mismatch fails at once; the barrier keeps every rank's look at the
    # directory before rank 0 creates run.json in it
    resume = check_run_dir(config, run_dir, ranks=ranks.count)
    barrier()
    setup = setup or prepare(config)
    run_dir = Path(run_dir)
    if not ranks.main:
        summary = _train_loop(
            config, setup, _OtherRank(run_dir, resume), run_dir, resume, None, on_step, ranks
        )
        return broadcast_object(summary)
    run = RunWriter(
        run_dir,
        config=run_config(config) | {"class_names": setup.data.class_names},
        seed=config.seed,
        device=str(setup.device),
        name=name,
        resume=resume,
    )
    with run:  # closes the record files if training raises; DONE only on success
        if ranks.count > 1 and "distributed" not in run.meta:
            run.write_meta("distributed", ranks.meta(config))
        summary = _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step, ranks)
    return broadcast_object(summary)


@dataclasses.dataclass(frozen=True)
class _Ranks:
    """Which ranks this process trains: its own under DDP, all ``shards`` in a replay."""

    count: int  # W: ranks the run has (processes, or shards replayed here)
    local: tuple[int, ...]  # the ranks whose batches this process computes
    distributed: bool  # torch.distributed runs W processes

    @classmethod
    def current(cls, config: TrainConfig, shards: int) -> _Ranks:
        world = world_size()
        if int(shards) < 1 or (world > 1 and shards != 1):
            raise EntangleValueError(
                f"shards must be 1 under torchrun and >= 1 otherwise, got {shards} "
                f"(world size {world})"
            )
        if world > 1 and config.coordinator_config() is not None:
            # the torchjd coordinators set the gradients themselves, outside DDP's reducer
            raise EntangleValueError(
                "--coordinator with several processes is not supported by entangle train; "
                "train it on one device, or use --eagc / the baseline under torchrun"
            )
        if world > 1:
            return cls(world, (rank(),), True)
        return cls(int(shards), tuple(range(int(shards))), False)

    @property
    def main(self) -> bool:
        return is_main_process()

    def lr(self, config: TrainConfig) -> float:
        """train_mp.py's linear scaling rule for W > 1 ranks; the given lr on one."""
        if self.count == 1:
            return config.lr
        return config.lr * config.batch_size * self.count / SIMGCD_LR_BATCH

    def meta(self, config: TrainConfig) -> dict:
        """run.json's ``distributed`` entry."""
        return {
            "world_size": self.count,
            "mode": "ddp" if self.distributed else "replayed in one process",
            "backend": torch.distributed.get_backend() if self.distributed else None,
            "batch_size_per_rank": config.batch_size,
            "global_batch_size": config.batch_size * self.count,
            "lr": self.lr(config),
            "lr_rule": "lr * batch_size * world_size / 128 (SimGCD train_mp.py)",
        }


# SimGCD train_mp.py: lr=args.lr * (args.batch_size * dist.get_world_size() / 128)
SIMGCD_LR_BATCH = 128


class _OtherRank:
    """A rank other than 0's view of the run: it reads rank 0's files and writes none.

    ``meta`` is rank 0's run.json on a resume (plus what this rank computed itself);
    checkpoint paths are rank 0's, which every rank loads from on a resume.
    """

    def __init__(self, run_dir: Path, resume: bool):
        self.path = Path(run_dir)
        self.meta = dict(RunReader(run_dir).meta) if resume else {}

    def write_meta(self, key: str, value) -> None:
        self.meta.setdefault(key, value)

    def checkpoint_path(self, name: str) -> Path:
        return RunWriter.checkpoint_path(self, name)  # type: ignore[arg-type]


class _Live(torch.nn.Module):
    """The trained backbone and head as one module for DDP (whose reducer averages both).

    ``forward(views [2b, ...])`` returns ``(z [2b, D], z_ref [2b, D] or None)``; the head is
    applied by the loop after EAGC's coordination, outside the forward (DDP's hooks sit on the
    parameters, so its gradients are averaged too). The reference model is kept out of the
    module list: it is frozen and broadcast once.
    """

    def __init__(self, backbone, head, shared):
        super().__init__()
        self.backbone, self.head = backbone, head
        self._shared = (shared,)

    def forward(self, views):
        shared = self._shared[0]
        return shared(views) if shared is not None else (self.backbone(views), None)


def check_run_dir(config: TrainConfig, run_dir, *, ranks: int | None = None) -> bool:
    """Whether ``run_dir`` holds an unfinished run of ``config`` to resume (False: none yet).

    ``ranks``: the run's world size (default: this process group's); a run resumes only
    with the world size it started with (its batches depend on it).

    Raises:
        EntangleValueError: the directory is a file, holds a finished run, or a run with
            other settings or another world size.
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
    reader = RunReader(run_dir)
    differ = config_differences(reader.config or {}, config)
    if differ:
        raise EntangleValueError(
            f"{run_dir} holds a run started with other settings ({', '.join(differ)} "
            "differ); resume it with the same settings or choose another run directory"
        )
    stored = (reader.meta.get("distributed") or {}).get("world_size", 1)
    want = world_size() if ranks is None else int(ranks)
    if stored != want:
        raise EntangleValueError(
            f"{run_dir} holds a run trained on {stored} process(es); resume it with "
            f"{stored} (torchrun --nproc_per_node {stored}), not {want}"
        )
    return True


def _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step, ranks) -> dict:
    device, data = setup.device, setup.data
    backbone, head = copy.deepcopy(setup.backbone), copy.deepcopy(setup.head)
    eagc = reference = shared = ref_labeled = resolved = None
    if config.needs_reference():
        reference = _rank_reference(config, setup, run, ranks)
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
    live = _Live(backbone, head, shared)
    if ranks.distributed:  # after the start weights: DDP broadcasts rank 0's at construction
        from torch.nn.parallel import DistributedDataParallel

        live = DistributedDataParallel(
            live, device_ids=[device.index] if device.type == "cuda" else None
        )
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    # SimGCD's optimiser: no weight decay on biases / 1-D params, cosine stepped per epoch
    opt, sched = simgcd_optimizer(
        (backbone, head),
        lr=ranks.lr(config),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
    )
    coordinator = _coordinator(config, backbone, params)
    samplers = [
        train_sampler(data, config.batch_size, seed=config.seed, rank=r, world_size=ranks.count)
        for r in ranks.local
    ]
    steps_per_epoch = len(samplers[0])
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
        for sampler in samplers:
            sampler.set_epoch(epoch)
        # rank r's views: rank 0's seed is the single-process run's
        generators = [
            torch.Generator().manual_seed(config.seed * 7919 + epoch + 1_000_003 * r)
            for r in ranks.local
        ]
        for i, rows in enumerate(zip(*samplers, strict=True)):
            step = epoch * steps_per_epoch + i
            probe.set_step(step)  # keeps `every` and record steps aligned across resumes
            probe.set_epoch(epoch)
            # one batch per local rank; rows [2b s, 2b (s+1)) of the views are shard s's
            batches = [
                make_batch(data, r, augment, g) for r, g in zip(rows, generators, strict=True)
            ]
            batch = _joined(batches, device)
            with probe.attribution_forward(), autocast():  # math attention: attribution
                z, z_ref = live(batch["views"])
                if eagc is not None:  # double-backwards
                    z = eagc.coordinate(z, batch["labeled2"], z_ref, scaler=scaler)
                proj, logits = head(z)
                sup, unsup = _shard_losses(
                    proj, logits, batches, device, epoch=epoch, config=loss_config
                )
            opt.zero_grad(set_to_none=True)
            probe.backward(
                sup,
                unsup,
                features=z,
                labeled=batch["labeled2"],
                novel=batch["novel2"],
                logits=logits,
                targets=batch["targets2"],
                index=batch["index2"],
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
        throughput = epoch_throughput(
            started, steps_per_epoch, config.batch_size * len(ranks.local), device
        )
        # the epoch's one look at the losses; every rank stops alike
        diverged = global_max(watch.read(), device)
        watch.reset()
        if diverged >= config.nan_limit and config.on_nan == "stop":
            reason = (
                f"{diverged} consecutive non-finite losses in epoch {epoch} (limit "
                f"{config.nan_limit}): training diverged"
            )
            if ranks.main:
                run.stop(reason, epoch=epoch)
            raise EntangleRuntimeError(
                f"{run_dir}: {reason}; the run is left incomplete (reason in STOPPED). Lower "
                "--lr and start a new run directory, or rerun with --on-nan continue"
            )
        if not ranks.main:  # rank 0 evaluates and writes; the next epoch's first step waits
            continue
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

    if not ranks.main:
        return None
    summary = run_summary(RunReader(run_dir))
    run.finish(summary)
    return summary


def _rank_reference(config: TrainConfig, setup: Setup, run, ranks: _Ranks):
    """The reference model, trained (or loaded) by rank 0 and the same on every rank.

    Rank 0 saves it as the run's ``reference`` checkpoint; the other ranks wait, then load
    that file (training it again on each GPU would cost the time and differ in the last
    bits).
    """
    path = run.checkpoint_path("reference")
    if ranks.main:
        reference = ensure_reference(config, setup)
        if not path.exists():
            save_model_checkpoint(path, *reference, meta={"role": "reference"})
    barrier()
    if not ranks.main:
        loaded = (
            config
            if setup.reference is not None
            else dataclasses.replace(config, reference=str(path))
        )
        reference = ensure_reference(loaded, setup)
    if ranks.distributed:
        for module in reference:
            broadcast_module(module)
    return reference


def _joined(batches: list[dict], device) -> dict:
    """The local ranks' batches as one forward's rows: views ``[2b W_local, ...]`` shard after
    shard (each shard's view 1 then view 2), and per-row masks/targets/indices in that order."""

    def two(key):
        return torch.cat([b[key].repeat(2) for b in batches]).to(device)

    return {
        "views": torch.cat([b["views"] for b in batches]).to(device),
        "labeled2": two("labeled"),
        "novel2": two("novel"),
        "targets2": two("labels"),
        "index2": two("index"),
    }


def _shard_losses(proj, logits, batches, device, *, epoch, config):
    """Each shard's (sup, unsup) on its own rows, averaged over the shards.

    One shard (single process, or one DDP rank) is plain ``gcd_losses``; ``W`` shards are
    train_mp's per-rank losses whose averaged gradients DDP applies.
    """
    out, start = [], 0
    for b in batches:
        rows = slice(start, start + 2 * len(b["index"]))
        start = rows.stop
        sup, unsup, _ = gcd_losses(
            proj[rows],
            logits[rows],
            b["labels"].to(device),
            b["labeled"].to(device),
            epoch=epoch,
            config=config,
        )
        out.append((sup, unsup))
    if len(out) == 1:
        return out[0]
    return tuple(torch.stack(parts).mean() for parts in zip(*out, strict=True))


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
