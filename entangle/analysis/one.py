"""One checkpoint's analysis (:func:`analyze_one`): its notes, the embedding, the evaluation
record, the gradient diagnostics, written as one run directory, and the summary a user compares
first (:func:`summarize`). :func:`entangle.analysis.run.analyze` calls it per checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from entangle.analysis.config import AnalyzeConfig
from entangle.analysis.features import embed, feature_record, input_transform
from entangle.analysis.gradients import gradient_diagnostics, teacher_epoch, view_augment
from entangle.analysis.inputs import FeatureData, check_classes
from entangle.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    _head_in_dim,
)
from entangle.data.datasets import GCDData, eval_inputs
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig, teacher_temperature_at
from entangle.runs.directory import RunWriter
from entangle.runs.summary import gradient_summary

Progress = Callable[[str, int, int, str], None]


@dataclass
class CheckpointAnalysis:
    """One analysed checkpoint: where its run is and what it found."""

    checkpoint: str | None
    run_dir: Path
    format: str | None
    summary: dict
    notes: list[str] = field(default_factory=list)


def analyze_one(
    loaded: LoadedCheckpoint | None,
    path,
    data: GCDData | FeatureData,
    run_dir: Path,
    config: AnalyzeConfig,
    device: torch.device,
    reference: torch.nn.Module | None = None,
    progress: Progress | None = None,
    *,
    resume: bool = False,
) -> CheckpointAnalysis:
    """Analyse one loaded checkpoint (or none, for features: data) into ``run_dir``.

    ``resume=True`` redoes an unfinished run there (its records are superseded).
    """
    source = str(path) if path is not None else config.data
    notes = _checked_notes(loaded, data, source, config)
    loss = config.loss_config()
    epoch = teacher_epoch(loss, _epoch(loaded))
    if loaded is not None and config.grad:
        notes += _objective_notes(loaded.meta.get("loss"), loss, epoch)
    run_config = _run_config(loaded, path, data, config, loss, epoch)
    timing: dict = {}
    with RunWriter(
        run_dir,
        config=run_config,
        seed=config.seed,
        device=str(device),
        name=run_dir.name,
        resume=resume,
    ) as run:
        backbone, head, z, logits = _features(
            loaded, data, config, device, source, progress, notes, timing
        )
        record, arrays = _feature_record(z, logits, data, config)
        steps = []
        if config.grad and config.grad_batches and not isinstance(data, FeatureData):
            steps = _gradients(
                run,
                backbone,
                head,
                z,
                data,
                config,
                loss,
                epoch=_epoch(loaded),
                device=device,
                reference=reference,
                progress=progress,
                notes=notes,
                timing=timing,
            )
        record = {"epoch": 0, "step": 0} | record | {"timing": timing, "notes": notes}
        run.write_epoch(record)
        run.save_features(
            0,
            features=z,
            labels=data.labels,
            labeled=data.labeled,
            novel=data.novel,
            logits=logits,
            **arrays,
        )
        summary = summarize(record, steps, loaded)
        if steps:
            summary["teacher_temperature"] = run_config["teacher_temperature"]
        run.finish(summary)
    return CheckpointAnalysis(
        None if path is None else str(path), run_dir, summary.get("format"), summary, notes
    )


def _features(loaded, data, config: AnalyzeConfig, device, source: str, progress, notes, timing):
    """``(backbone, head, z [n, D], logits [n, K] or None)``: the model on ``device`` and its
    embedding of the data (timed into ``timing``), or a features file's own arrays (the
    backbone then ``None``; the checkpoint's head, when there is one, gives the logits)."""
    head = loaded.head if loaded is not None else None
    if isinstance(data, FeatureData):
        z, logits = data.features, data.logits
        if loaded is not None and head is not None:
            logits = _head_logits(head, z, source)
        notes.append("features:FILE.npz: gradient diagnostics need the model's inputs; skipped")
        return None, head, z, logits
    backbone = loaded.backbone.to(device)
    head = head.to(device) if head is not None else None
    start = time.perf_counter()
    z, logits = embed(backbone, head, data, device, batch_size=config.batch_size, progress=progress)
    timing["features_s"] = time.perf_counter() - start
    timing["features_per_image_s"] = timing["features_s"] / len(data)
    return backbone, head, z, logits


def _checked_notes(loaded, data, source: str, config: AnalyzeConfig) -> list[str]:
    """The loader's notes plus the head's fit to the data's classes; fails before any output
    when the model cannot take the data's inputs."""
    notes = list(loaded.notes) if loaded is not None else []
    head = loaded.head if loaded is not None else None
    if loaded is not None and head is not None:
        notes += check_classes(loaded.num_classes, data, source)
    elif loaded is not None:
        notes.append("no class head in the checkpoint: head accuracy and free energy skipped")
    if loaded is not None and not isinstance(data, FeatureData):
        _check_model_takes_data(loaded, data, source, grad=config.grad and head is not None)
    return notes


def _run_config(loaded, path, data, config: AnalyzeConfig, loss: LossConfig, epoch) -> dict:
    """run.json's config: the settings, the objective the gradients are of and the data."""
    return dataclasses.asdict(config) | {
        # the objective the gradients are of, with the teacher temperature at this checkpoint
        "loss": dataclasses.asdict(loss),
        "teacher_epoch": epoch,
        "teacher_temperature": teacher_temperature_at(epoch, loss),
        "checkpoint": None if path is None else str(Path(path).resolve()),
        "format": None if loaded is None else loaded.format,
        "checkpoint_meta": {} if loaded is None else _plain(loaded.meta),
        "num_classes": None if loaded is None else loaded.num_classes,
        "class_names": data.class_names,
        "old_classes": data.old_classes,
        "n_samples": len(data),
    }


def _feature_record(z, logits, data, config: AnalyzeConfig) -> tuple[dict, dict]:
    """The evaluation record of features ``z`` ``[n, D]`` (and ``logits`` ``[n, K]`` or None)."""
    return feature_record(
        z,
        logits,
        data.labels,
        data.labeled,
        data.novel,
        num_classes=data.num_classes,
        kmeans=config.kmeans,
        tsne=config.tsne,
        soc_k=config.soc_k,
        aperture=config.aperture,
        seed=config.seed,
        tsne_max_points=config.tsne_max_points,
        accuracy=config.accuracy,
        logit_temperature=config.student_temperature,  # the head's softmax temperature
    )


def _gradients(
    run, backbone, head, z, data, config, loss, *, epoch, device, reference, progress, notes, timing
) -> list[dict]:
    """The probed gradient steps (appended to ``run``), or none with a note saying why;
    ``timing`` gains ``grad_s`` and ``grad_per_image_s``."""
    if head is None:
        notes.append("no class head: the SimGCD objective (gradients) cannot be formed")
        return []
    if not bool(torch.isfinite(z).all()):
        # the conceptor cannot be fitted and every gradient would be NaN as well
        notes.append(
            "the checkpoint's features hold NaN or inf (training diverged?): "
            "gradient diagnostics skipped"
        )
        return []
    start = time.perf_counter()
    steps = gradient_diagnostics(
        backbone,
        head,
        data,
        run,
        batches=config.grad_batches,
        batch_size=config.batch_size,
        device=device,
        reference=reference,
        labeled_features=z[data.labeled],
        eagc=config.eagc,
        epoch=epoch,
        aperture=config.aperture,
        eep_weight=config.eep_weight,
        aga_weight=config.aga_weight,
        loss=loss,
        seed=config.seed,
        progress=progress,
    )
    timing["grad_s"] = time.perf_counter() - start
    # every probed batch forwards and backwards two views of each sample
    views = 2 * min(config.batch_size, len(data)) * max(len(steps), 1)
    timing["grad_per_image_s"] = timing["grad_s"] / views
    return steps


def _check_model_takes_data(loaded: LoadedCheckpoint, data: GCDData, source: str, grad: bool):
    """Fail before any output is written: transforms available, inputs the model accepts."""
    transform = input_transform(loaded.backbone, data)  # image data: needs torchvision
    if grad:
        view_augment(loaded.backbone, data)
    x = eval_inputs(data, torch.arange(min(2, len(data))), transform)
    try:
        with torch.inference_mode():
            loaded.backbone(x)
    except EntangleValueError:
        raise
    except (RuntimeError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise CheckpointError(
            f"{source}: the {loaded.format} model cannot take the data's inputs "
            f"(shape {tuple(x.shape)}): {detail}; pass the --data the model was trained on"
        ) from None


def _head_logits(head: torch.nn.Module, z: torch.Tensor, source: str) -> torch.Tensor:
    want = _head_in_dim(head)
    if want is not None and want != z.shape[1]:
        raise CheckpointError(
            f"{source}: the head expects {want}-d features but the features file has "
            f"{z.shape[1]}-d; pass the checkpoint the features were computed with"
        )
    with torch.inference_mode():
        return head(z)[1].float()


def _epoch(loaded: LoadedCheckpoint | None) -> float | None:
    epoch = None if loaded is None else loaded.meta.get("epoch")
    return float(epoch) if isinstance(epoch, int | float) and not isinstance(epoch, bool) else None


def _objective_notes(trained, used: LossConfig, epoch: float) -> list[str]:
    """A note when the checkpoint records another objective than the gradients use.

    The warm-up settings are compared through their effect, the teacher temperature at the
    checkpoint's epoch.
    """
    if not isinstance(trained, dict):
        return []
    names = [f.name for f in dataclasses.fields(LossConfig)]
    try:
        trained_loss = LossConfig.of(trained)
    except (TypeError, EntangleValueError):
        return []
    schedule = ("warmup_teacher_temperature", "teacher_temperature", "warmup_teacher_epochs")
    differ = [
        f"{k} {getattr(trained_loss, k)} (gradients use {getattr(used, k)})"
        for k in names
        if k not in schedule and getattr(trained_loss, k) != getattr(used, k)
    ]
    t_trained = teacher_temperature_at(epoch, trained_loss)
    t_used = teacher_temperature_at(epoch, used)
    if abs(t_trained - t_used) > 1e-12:
        differ.append(f"teacher temperature {t_trained:.4g} (gradients use {t_used:.4g})")
    if not differ:
        return []
    return [
        "the checkpoint was trained with another objective: "
        + ", ".join(differ)
        + "; pass its settings (--sup-weight, --*-temperature, --warmup-teacher-epochs, ...) "
        "for its own gradients"
    ]


def _plain(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}


def summarize(record: dict, steps: list[dict], loaded: LoadedCheckpoint | None) -> dict:
    """The numbers of one analysis a user compares first (the terminal table, DONE)."""
    out: dict = {
        "format": None if loaded is None else loaded.format,
        "num_classes": None if loaded is None else loaded.num_classes,
    }
    for k in ("acc_all", "acc_old", "acc_new"):
        out[k] = record.get(k, math.nan)
    out["acc_protocol"] = record.get("acc_protocol") or record.get("kmeans_protocol")
    for prefix in ("acc", "kmeans"):
        for protocol, acc in record.get(f"{prefix}_protocols", {}).items():
            for k, v in acc.items():
                out[f"{prefix}_{k}_{protocol}"] = v
    for k in ("all", "old", "new"):
        out[f"kmeans_{k}"] = record.get("kmeans", {}).get(k, math.nan)
    out["soc"] = record.get("soc", math.nan)
    for group in ("labeled", "unlabeled_old", "unlabeled_new"):
        out[f"energy_{group}"] = record.get("energy", {}).get(group, {}).get("mean", math.nan)
    out["knn_new_to_old"] = record.get("knn_overlap", {}).get("new_to_old", math.nan)
    for kind in ("raw", "eagc"):
        if not any(kind in s for s in steps):
            continue
        # the report's statistics: NaN steps are excluded from means and rates, not counted
        # as "no conflict"
        stats = gradient_summary(steps, kind, "last_block")
        out[f"cos_{kind}"] = stats[f"cos_mean_{kind}"]
        out[f"gdc_{kind}"] = stats[f"gdc_all_{kind}"]
        out[f"conflict_rate_{kind}"] = stats[f"conflict_rate_{kind}"]
    out["grad_batches"] = len(steps)
    out["nan_steps"] = sum(1 for s in steps if s.get("nan"))
    out.update({k: v for k, v in record.get("timing", {}).items() if k.endswith("_s")})
    return out
