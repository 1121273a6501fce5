"""An ``entangle analyze`` run of a folder's checkpoint, attached to the run imported from its log.

``entangle import-log FOLDER --attach AN/model`` puts the checkpoint's diagnostics into the
imported run, at the evaluation of the epoch the checkpoint was saved after, so one report
shows the logged curves and the checkpoint's t-SNE, energy and subspace overlap together:

- the analysis' features file becomes the imported run's ``features/epoch_EEE.npz``;
- its evaluation record's diagnostics (``soc``, ``principal_angles``, ``energy``,
  ``free_energy``, ``knn_overlap``, ``conceptor``, ``kmeans`` ...) are added to that epoch's
  record; the logged accuracies stay, the checkpoint head's own go under ``checkpoint``;
- its gradient batches (probed at the checkpoint, not training steps) are summarised under
  ``checkpoint.gradients``; they never enter steps.jsonl.

The epoch is the checkpoint's own (``checkpoint_meta.epoch``, 0-based: SimGCD's
``epoch + 1`` is read back as the last epoch index), else the last logged epoch, said in a
note. docs/logs.md ("Checkpoint diagnostics beside the log") describes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entangle.errors import EntangleValueError
from entangle.runs import keys
from entangle.runs.directory import RunReader

# evaluation keys that stay the log's (or are bookkeeping of the analysis itself)
_KEPT_FROM_LOG = ("epoch", "step", "acc_all", "acc_old", "acc_new", "acc_protocol", "acc_protocols")
_NOT_DIAGNOSTICS = ("timing", "notes")
_GRADIENT_KEYS = ("gdc", "cos", "conflict", "norm_ratio")


@dataclass
class Attached:
    """One analysis run, read and placed at an epoch of the imported run."""

    path: Path
    epoch: int
    record: dict  # the diagnostics added to that epoch's record (``checkpoint`` included)
    features: dict[str, np.ndarray] | None
    notes: list[str]


def analysis_run(path) -> Path:
    """The run directory ``path`` names: an analyze run, or an analyze --out with one run."""
    path = Path(path)
    if (path / "run.json").is_file():
        return path
    runs = sorted(p for p in path.glob("*") if (p / "run.json").is_file()) if path.is_dir() else []
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise EntangleValueError(
            f"--attach {path}: no entangle analyze run there (run.json); make one with "
            "entangle analyze FOLDER/checkpoints/model.pt --data ... --out AN, then --attach AN"
        )
    raise EntangleValueError(
        f"--attach {path} holds {len(runs)} analyze runs ({', '.join(p.name for p in runs)}); "
        "attach one of them by its folder"
    )


def read_attached(path, logged_epochs: list[int]) -> Attached:
    """Read an analyze run and decide the imported epoch it belongs to.

    Args:
        path: an ``entangle analyze`` run directory (or its ``--out`` with one run).
        logged_epochs: the imported run's evaluation epochs, sorted.
    """
    run_dir = analysis_run(path)
    reader = RunReader(run_dir)
    config = reader.config or {}
    if "checkpoint" not in config or not reader.epochs:
        raise EntangleValueError(
            f"--attach {run_dir}: not a finished entangle analyze run (no checkpoint in its "
            "run.json or no evaluation record)"
        )
    notes: list[str] = []
    meta_epoch = (config.get("checkpoint_meta") or {}).get("epoch")
    if isinstance(meta_epoch, int) and not isinstance(meta_epoch, bool) and meta_epoch >= 0:
        epoch = meta_epoch
        if logged_epochs and epoch not in logged_epochs:
            notes.append(
                f"{run_dir.name}: the checkpoint was saved after epoch {epoch}, which the log "
                "does not evaluate; its diagnostics stand at that epoch alone"
            )
    elif logged_epochs:
        epoch = logged_epochs[-1]
        notes.append(
            f"{run_dir.name}: the checkpoint does not record its epoch; placed at the last "
            f"logged epoch {epoch} (a training folder's model.pt is its latest save)"
        )
    else:
        raise EntangleValueError(
            f"--attach {run_dir}: the checkpoint does not record its epoch and the log has no "
            "evaluation to place it at"
        )
    evaluation = reader.epochs[-1]
    record = {
        k: v for k, v in evaluation.items() if k not in _KEPT_FROM_LOG and k not in _NOT_DIAGNOSTICS
    }
    checkpoint = {
        "analysis": str(run_dir.resolve()),
        "file": config.get("checkpoint"),
        "format": config.get("format"),
        "data": config.get("data"),
        **{k: evaluation[k] for k in _KEPT_FROM_LOG[2:] if k in evaluation},
    }
    gradients = gradient_summary(reader.steps)
    if gradients:
        checkpoint[keys.CHECKPOINT_GRADIENTS] = gradients
    record[keys.CHECKPOINT] = checkpoint
    saved = reader.feature_epochs()
    features = reader.features(saved[-1]) if saved else None
    if features is None:
        notes.append(f"{run_dir.name}: no features saved by the analysis (no t-SNE or energy)")
    return Attached(run_dir, epoch, record, features, notes)


def gradient_summary(steps: list[dict]) -> dict:
    """Means over an analysis' gradient batches: ``{kind: {group: {key: mean}}}`` and ``batches``.

    ``kind`` is ``raw``, ``eagc`` or ``eagc_authors``; ``conflict`` (0/1 per batch) averages to
    the conflict rate. Non-finite batches are left out of each mean.
    """
    out: dict = {}
    for kind in ("raw", "eagc", "eagc_authors"):
        groups: dict = {}
        for rec in steps:
            for group, values in (rec.get(kind) or {}).items():
                if not isinstance(values, dict):
                    continue
                for key in _GRADIENT_KEYS:
                    value = values.get(key)
                    if isinstance(value, bool):
                        value = float(value)
                    if isinstance(value, int | float) and math.isfinite(value):
                        groups.setdefault(group, {}).setdefault(key, []).append(float(value))
        if groups:
            out[kind] = {
                g: {k: float(np.mean(v)) for k, v in by_key.items()} for g, by_key in groups.items()
            }
    if out:
        out[keys.GRADIENT_BATCHES] = len(steps)
    return out


def attach_records(epochs: list[dict], attached: Attached) -> list[dict]:
    """``epochs`` with ``attached``'s diagnostics merged into its epoch's record (sorted)."""
    by_epoch = {rec["epoch"]: rec for rec in epochs}
    rec = by_epoch.setdefault(attached.epoch, {"epoch": attached.epoch})
    if "checkpoint" in rec:
        raise EntangleValueError(
            f"two --attach analyses for epoch {attached.epoch}; attach one checkpoint per epoch"
        )
    for key, value in attached.record.items():
        rec.setdefault(key, value)  # a logged value of the same name stays the log's
    return [by_epoch[e] for e in sorted(by_epoch)]


def logged_accuracy_note(epochs: list[dict], attached: Attached) -> str | None:
    """A note comparing the checkpoint head's accuracy with the log's at the same epoch."""
    rec = next((r for r in epochs if r["epoch"] == attached.epoch), {})
    head = attached.record["checkpoint"]
    if not all(isinstance(x.get("acc_all"), float) for x in (rec, head)):
        return None
    return (
        f"{attached.path.name} at epoch {attached.epoch}: head accuracy All "
        f"{head['acc_all']:.4f} ({head.get('acc_protocol', '?')}, on analyze's data) vs "
        f"logged {rec['acc_all']:.4f} ({rec.get('acc_protocol', '?')})"
    )
