"""``analyze``: diagnose saved GCD checkpoints into run directories and one report.

For each checkpoint: load it safely (format detected), embed the data, compute clustering
accuracy (head argmax and k-means), SOC / principal angles / energies / k-NN overlap, probe
the gradients of the SimGCD objective raw and with EAGC, and write a run directory::

    OUT/<checkpoint name>/   run.json (config: checkpoint, format, class_names, ...),
                             steps.jsonl (probe records), epochs.jsonl (one record),
                             features/epoch_000.npz, DONE (the summary)
    OUT/report/              the HTML/PNG report over all of them
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from entangle.analysis.config import AnalyzeConfig
from entangle.analysis.features import embed, feature_record, input_transform
from entangle.analysis.gradients import gradient_diagnostics, teacher_epoch, view_augment
from entangle.analysis.inputs import FeatureData, check_classes, load_inputs
from entangle.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    _head_in_dim,
    load_gcd_checkpoint,
)
from entangle.data.datasets import GCDData, eval_inputs
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig, teacher_temperature_at
from entangle.nn.devices import resolve_device
from entangle.runs.directory import RunReader, RunWriter
from entangle.runs.io import refuse_symlink
from entangle.runs.summary import gradient_summary
from entangle.runs.untrusted import safe_name

Progress = Callable[[str, int, int, str], None]


@dataclass
class CheckpointAnalysis:
    """One analysed checkpoint: where its run is and what it found."""

    checkpoint: str | None
    run_dir: Path
    format: str | None
    summary: dict
    notes: list[str] = field(default_factory=list)


@dataclass
class AnalysisResult:
    """Every checkpoint's analysis and the report built over them (None when skipped)."""

    analyses: list[CheckpointAnalysis]
    report: Path | None
    device: str


def _run_name(path: str | None, data: str, taken: set[str]) -> str:
    base = Path(path).stem if path else Path(data.partition(":")[2] or data).stem
    # a file named "...pt" has the stem "..": never let a user's name leave ``out``
    base = safe_name(base, fallback="checkpoint")
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def analyze(
    checkpoints: Sequence[str | Path],
    out: str | Path,
    config: AnalyzeConfig | None = None,
    *,
    data: GCDData | FeatureData | None = None,
    progress: Progress | None = None,
    on_loaded: Callable[[str, LoadedCheckpoint], None] | None = None,
) -> AnalysisResult:
    """Analyse each checkpoint on the same data; write one run per checkpoint and a report.

    Args:
        checkpoints: checkpoint files (may be empty with ``features:`` data: the features
            file alone is analysed).
        out: output folder; runs go to ``out/<checkpoint stem>``, the report to
            ``out/report``. Existing runs are never overwritten: a rerun skips the finished
            ones and redoes the unfinished ones (same checkpoints and settings only).
        config: the settings (:class:`AnalyzeConfig`).
        data: already loaded data (e.g. a custom in-memory source) instead of
            ``config.data``.
        progress: ``progress(stage, done, total, note)`` for display.
        on_loaded: called with ``(path, loaded)`` after each checkpoint loads (to print
            the detected format early).

    Raises:
        CheckpointError: unsafe, corrupt or mismatching checkpoint; a head inconsistent with
            the data's classes.
        EntangleValueError: data source errors, existing run directories.
    """
    config = config or AnalyzeConfig()
    device = resolve_device(config.device)
    if data is None:
        data = load_inputs(
            config.data,
            old_classes=config.old_classes,
            labeled_fraction=config.labeled_fraction,
            seed=config.seed,
            max_samples=config.max_samples,
            labeled_split=config.labeled_split,
        )
    if not checkpoints and not isinstance(data, FeatureData):
        raise EntangleValueError(
            "no checkpoint given; pass one or more checkpoint files (only features:FILE.npz "
            "data can be analysed without one)"
        )
    out = Path(out)
    # --out holds the run folders and report/: a symlink there is refused before any write
    # (the run folders were written into its target before the report refused it)
    refuse_symlink(out)
    reference = None
    if config.reference and config.grad and not isinstance(data, FeatureData):
        ref = load_gcd_checkpoint(
            config.reference, trust=config.trust_checkpoint, model_factory=config.model
        )
        reference = ref.backbone.to(device)
    taken: set[str] = set()
    analyses = []
    for path in list(checkpoints) or [None]:
        loaded = None
        run_dir = out / _run_name(None if path is None else str(path), config.data, taken)
        state = _earlier_run(run_dir, path, config)
        if state == "done":  # a rerun after a failure or a kill skips what finished
            analyses.append(_finished_analysis(run_dir, path))
            continue
        if path is not None:
            loaded = load_gcd_checkpoint(
                path,
                trust=config.trust_checkpoint,
                model_factory=config.model,
                format=config.checkpoint_format,
                head=config.head_file,
            )
            if on_loaded is not None:
                on_loaded(str(path), loaded)
        analyses.append(
            analyze_one(
                loaded,
                path,
                data,
                run_dir,
                config,
                device,
                reference,
                progress,
                resume=state == "unfinished",
            )
        )
    report = None
    if config.report:
        # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
        from entangle.report import build_report

        report = build_report(
            [a.run_dir for a in analyses],
            out / "report",
            seed=config.seed,
            tsne_max_points=config.tsne_max_points,
        )
    return AnalysisResult(analyses, report, str(device))


# settings that change what an analysis shows but not its run directory's numbers, and
# those run.json stores resolved (class ids, the epoch's temperature) rather than as given
_OUTPUT_ONLY = ("report", "device", "trust_checkpoint", "old_classes", "teacher_temperature")


def _earlier_run(run_dir: Path, path, config: AnalyzeConfig) -> str | None:
    """``"done"``, ``"unfinished"`` or None (no earlier run) for ``run_dir``.

    Raises:
        EntangleValueError: the run there analysed another checkpoint or other settings.
    """
    if not (run_dir / "run.json").exists():
        return None
    stored = RunReader(run_dir).config or {}
    checkpoint = None if path is None else str(Path(path).resolve())
    want = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples read back as lists
    differ = [k for k in want if k not in _OUTPUT_ONLY and k in stored and stored[k] != want[k]]
    if stored.get("checkpoint") != checkpoint:
        differ.insert(0, "checkpoint")
    if differ:
        raise EntangleValueError(
            f"{run_dir} holds an analysis of {stored.get('checkpoint') or stored.get('data')} "
            f"with other settings ({', '.join(differ)} differ); rerun with the same "
            "checkpoints and options to resume it, or pass another --out"
        )
    return "done" if (run_dir / "DONE").exists() else "unfinished"


def _finished_analysis(run_dir: Path, path) -> CheckpointAnalysis:
    reader = RunReader(run_dir)
    summary = reader.summary or {}
    notes = list((reader.epochs[-1] if reader.epochs else {}).get("notes") or [])
    notes.append("finished in an earlier run of analyze: not redone")
    return CheckpointAnalysis(
        None if path is None else str(path), run_dir, summary.get("format"), summary, notes
    )


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
    notes = list(loaded.notes) if loaded is not None else []
    head = loaded.head if loaded is not None else None
    if loaded is not None and head is not None:
        notes += check_classes(loaded.num_classes, data, source)
    elif loaded is not None:
        notes.append("no class head in the checkpoint: head accuracy and free energy skipped")
    if loaded is not None and not isinstance(data, FeatureData):
        _check_model_takes_data(loaded, data, source, grad=config.grad and head is not None)
    loss = config.loss_config()
    epoch = teacher_epoch(loss, _epoch(loaded))
    if loaded is not None and config.grad:
        notes += _objective_notes(loaded.meta.get("loss"), loss, epoch)
    run_config = dataclasses.asdict(config) | {
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
    timing: dict = {}
    with RunWriter(
        run_dir,
        config=run_config,
        seed=config.seed,
        device=str(device),
        name=run_dir.name,
        resume=resume,
    ) as run:
        if isinstance(data, FeatureData):
            z, logits = data.features, data.logits
            if loaded is not None and head is not None:
                logits = _head_logits(head, z, source)
            notes.append("features:FILE.npz: gradient diagnostics need the model's inputs; skipped")
        else:
            backbone = loaded.backbone.to(device)
            head = head.to(device) if head is not None else None
            start = time.perf_counter()
            z, logits = embed(
                backbone, head, data, device, batch_size=config.batch_size, progress=progress
            )
            timing["features_s"] = time.perf_counter() - start
            timing["features_per_image_s"] = timing["features_s"] / len(data)
        record, arrays = feature_record(
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
            # the head's softmax temperature (SimGCD's 0.1 once the loss settings exist)
            logit_temperature=getattr(config, "student_temperature", 1.0),
        )
        steps = []
        if config.grad and config.grad_batches and not isinstance(data, FeatureData):
            if head is None:
                notes.append("no class head: the SimGCD objective (gradients) cannot be formed")
            elif not bool(torch.isfinite(z).all()):
                # the conceptor cannot be fitted and every gradient would be NaN as well
                notes.append(
                    "the checkpoint's features hold NaN or inf (training diverged?): "
                    "gradient diagnostics skipped"
                )
            else:
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
                    epoch=_epoch(loaded),
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
