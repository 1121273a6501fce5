"""The GCD recipe's training loop: one readable loop with a Probe and optional EAGC.

The run's objects (models, EAGC, optimiser, Probe) are built by entangle.gcd.assemble, the
ranks (DDP or a one-process replay) are entangle.gcd.ranks'; here are the loop, one step
(:func:`_train_step`) and the end of an epoch (:func:`_end_epoch`).

``prepare(config)`` (entangle.gcd.setup) builds the data, the (pretrained, prefix-frozen)
backbone and a fresh head; ``train(config, run_dir, setup)`` trains from exactly those
weights, so a baseline and an EAGC run made from the same ``Setup`` start from identical
weights (the reference code compares runs from different starts, see docs/protocol.md).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from entangle.checkpoints import save_checkpoint as save_model_checkpoint
from entangle.data.datasets import default_workers, epoch_batches
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.gcd.assemble import TrainingRun, amp_context, assemble
from entangle.gcd.config import PLACEMENT_FIELDS, TrainConfig, config_differences, run_config
from entangle.gcd.evaluate import evaluate, run_summary
from entangle.gcd.losses import gcd_losses
from entangle.gcd.ranks import SIMGCD_LR_BATCH, OtherRank, Ranks
from entangle.gcd.setup import Setup, ensure_reference, prepare, resolve_device
from entangle.nn.distributed import (
    barrier,
    broadcast_object,
    gather_object,
    global_max,
    world_size,
)
from entangle.probing.evaluation import write_epoch
from entangle.runs.directory import RunReader, RunWriter
from entangle.runs.io import make_dir

# re-exported: the recipe's public names all live at entangle.gcd.train
__all__ = [
    "PLACEMENT_FIELDS",
    "SIMGCD_LR_BATCH",
    "WALL_CLOCK_KEYS",
    "amp_context",
    "epoch_throughput",
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


def train(
    config: TrainConfig,
    run_dir,
    setup: Setup | None = None,
    *,
    name: str | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
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
        on_step: called with ``(step, steps_total, loss)`` after each optimiser step (on
            every rank; ``on_epoch`` on rank 0 only, where the evaluation runs); ``loss`` is
            the step's training loss ``sup + unsup``, a detached 0-d tensor on the run's
            device (``float()`` of it waits for the GPU: a display reads it at its own
            refresh rate, not every step).
        shards: single-process replay of this many ranks (1: none; must be 1 under DDP).

    Returns:
        the summary written to DONE (last epoch's accuracies, mean conflict, GDC, SOC).
    """
    ranks = Ranks.current(config, shards)
    # before prepare(): a mismatch fails at once; the barrier keeps every rank's look at the
    # directory before rank 0 creates run.json in it
    resume = check_run_dir(config, run_dir, ranks=ranks.count)
    barrier()
    setup = setup or prepare(config)
    run_dir = Path(run_dir)
    if not ranks.main:
        summary = _train_loop(
            config, setup, OtherRank(run_dir, resume), run_dir, resume, None, on_step, ranks
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


def check_run_dir(config: TrainConfig, run_dir, *, ranks: int | None = None) -> bool:
    """Whether ``run_dir`` holds an unfinished run of ``config`` to resume (False: none yet).

    ``ranks``: the run's world size (default: this process group's); a run resumes only
    with the world size it started with (its batches depend on it).

    Raises:
        EntangleValueError: the directory is a file, holds a finished run, or a run with
            other settings or another world size.
    """
    run_dir = Path(run_dir)
    # os.path: a name too long to stat is no file (make_dir then says it cannot be created)
    if os.path.isfile(run_dir) and not os.path.islink(run_dir):
        raise EntangleValueError(
            f"{run_dir} is a file, not a run directory; choose a new or unfinished run directory"
        )
    # created now, through the audited primitive, so a read-only place, a too-long name or a
    # symlink (refused, never written through) fails before pretraining
    make_dir(run_dir, what="run directory")
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
    t = assemble(config, setup, run, resume, ranks)
    steps_per_epoch = t.steps_per_epoch
    workers = config.workers
    if workers is None:  # the machine's cores, shared by the processes on it
        import os

        workers = default_workers((os.cpu_count() or 1) // max(1, world_size()))
    for epoch in range(t.start_epoch, config.epochs):
        started = time.perf_counter()
        if t.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(t.device)
        t.backbone.train()
        t.head.train()
        for sampler in t.samplers:
            sampler.set_epoch(epoch)
        # rank r's views: rank 0's seed is the single-process run's
        generators = [
            torch.Generator().manual_seed(config.seed * 7919 + epoch + 1_000_003 * r)
            for r in ranks.local
        ]
        streams = [
            epoch_batches(
                t.data, list(s), t.augment, g, workers=workers, pin_memory=t.device.type == "cuda"
            )
            for s, g in zip(t.samplers, generators, strict=True)
        ]
        # one batch per local rank (DataLoader workers decode image batches ahead)
        for i, batches in enumerate(zip(*streams, strict=True)):
            step = epoch * steps_per_epoch + i
            loss = _train_step(t, step, epoch, batches)
            if on_step is not None:
                on_step(step + 1, config.epochs * steps_per_epoch, loss)
        t.sched.step()
        record = _end_epoch(t, epoch, started, run_dir, config.workers)
        if record is not None and on_epoch is not None:
            on_epoch(epoch, record)

    if not ranks.main:
        return None
    summary = run_summary(RunReader(run_dir))
    run.finish(summary)
    return summary


def _train_step(t: TrainingRun, step: int, epoch: int, batches) -> torch.Tensor:
    """One optimiser step on each local rank's batch: forward, the Probe's backward, update.

    Returns:
        the step's training loss ``sup + unsup``, detached (0-d, on the device; not synced).
    """
    probe, eagc, scaler = t.probe, t.eagc, t.scaler
    probe.set_step(step)  # keeps `every` and record steps aligned across resumes
    probe.set_epoch(epoch)
    # rows [2b s, 2b (s+1)) of the views are shard s's
    batch = _joined(batches, t.device)
    with probe.attribution_forward(), t.autocast():  # math attention: attribution
        z, z_ref = t.live(batch["views"])
        if eagc is not None:  # double-backwards
            z = eagc.coordinate(z, batch["labeled2"], z_ref, scaler=scaler)
        proj, logits = t.head(z)
        sup, unsup = _shard_losses(
            proj, logits, batches, t.device, epoch=epoch, config=t.loss_config
        )
    t.opt.zero_grad(set_to_none=True)
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
    t.watch.update(sup, unsup)
    if scaler is not None:
        scaler.step(t.opt)
        scaler.update()
    else:
        t.opt.step()
    return (sup + unsup).detach()


def _end_epoch(t: TrainingRun, epoch: int, started: float, run_dir: Path, workers) -> dict | None:
    """Stop a diverged run; on rank 0 evaluate, write the record and commit the checkpoints.

    ``workers``: DataLoader workers for the evaluation's image batches (None: the machine's
    default; rank 0 evaluates alone while the other ranks wait, so it may use every core).

    Returns:
        the epoch record as written (None on other ranks: rank 0 evaluates and writes, the
        next epoch's first step waits for it).
    """
    config, run, ranks = t.config, t.run, t.ranks
    throughput = epoch_throughput(
        started, t.steps_per_epoch, config.batch_size * len(ranks.local), t.device
    )
    # the epoch's one look at the losses; every rank stops alike
    diverged = global_max(t.watch.read(), t.device)
    t.watch.reset()
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
    # EAGC's previous-batch weights are of each rank's own rows (the authors' GDC uses them):
    # last.pt keeps every rank's, so each resumes with its own
    by_rank = None
    if t.eagc is not None and ranks.distributed:
        by_rank = gather_object(t.eagc.state_dict()["last_weights"])
    if not ranks.main:
        return None
    record, arrays = evaluate(
        t.backbone,
        t.head,
        t.data,
        t.device,
        accuracy=config.accuracy,
        k=config.soc_k,
        aperture=run.meta["calibration"]["aperture"],
        workers=workers,
    )
    record["nonfinite_loss_run"] = diverged
    record |= throughput
    record = write_epoch(
        run,
        epoch,
        (epoch + 1) * t.steps_per_epoch,
        record,
        arrays if config.save_features else None,
    )
    state = {
        "backbone": t.backbone.state_dict(),
        "head": t.head.state_dict(),
        "optimizer": t.opt.state_dict(),
        "scheduler": t.sched.state_dict(),
        "epoch": epoch,
    }
    if t.eagc is not None:
        state["eagc"] = t.eagc.state_dict()
        if by_rank is not None:
            state["eagc"]["last_weights_by_rank"] = by_rank
    # the model alone, in entangle's checkpoint format, for `entangle analyze`
    save_model_checkpoint(
        run.checkpoint_path("model"),
        t.backbone,
        t.head,
        # the objective too: analyze says when its gradients use another one
        meta={"epoch": epoch, "data": config.data, "loss": dataclasses.asdict(t.loss_config)},
    )
    # last.pt is written last: it commits the epoch, so a run resumed after a kill
    # anywhere before it redoes the whole epoch and DONE implies final-epoch artefacts
    run.save_checkpoint("last", state)
    return record


def _joined(batches, device) -> dict:
    """The local ranks' batches as one forward's rows: views ``[2b W_local, ...]`` shard after
    shard (each shard's view 1 then view 2), and per-row masks/targets/indices in that order."""

    def two(key):
        return torch.cat([b[key].repeat(2) for b in batches]).to(device)

    return {
        # one shard's views stay in the (pinned) tensor the loader made: no host copy
        "views": (
            batches[0]["views"] if len(batches) == 1 else torch.cat([b["views"] for b in batches])
        ).to(device, non_blocking=True),
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
