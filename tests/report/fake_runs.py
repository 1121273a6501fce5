"""Small, valid run directories for the report tests (test data, no test logic).

Runs are written with the real :class:`entangle.runs.directory.RunWriter`, so the report reads
exactly
what a training loop would leave behind, including an unfinished run with a torn last line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entangle.runs.directory import RunWriter

XSS = "<script>alert(1)</script>"
CLASS_NAMES = ["cat", "dog", XSS, "ship & boat", "truck", "bird"]
N_OLD = 3


def _summary(rng, center: float, spread: float) -> dict:
    q = np.sort(rng.normal(center, spread, size=5))
    return {
        "mean": float(q.mean()),
        "std": spread,
        "q10": float(q[0]),
        "q25": float(q[1]),
        "q50": float(q[2]),
        "q75": float(q[3]),
        "q90": float(q[4]),
        "n": 64,
    }


def _grad_record(rng, cos: float) -> dict:
    norm_sup, norm_unsup = float(rng.uniform(0.5, 2)), float(rng.uniform(0.1, 3))
    return {
        "cos": cos,
        "gdc": float(np.clip(0.5 - 0.5 * cos + rng.normal(0, 0.02), 0, 2)),
        "norm_sup": norm_sup,
        "norm_unsup": norm_unsup,
        "norm_ratio": norm_unsup / norm_sup,
        "gms": 2 * norm_sup * norm_unsup / (norm_sup**2 + norm_unsup**2),
        "conflict": cos < 0,
    }


def step_record(rng, step: int, *, eagc: bool, grouped: bool) -> dict:
    """One probe record; raw cosine drifts from conflicting (< 0) to aligned."""
    cos = float(np.tanh(-0.4 + step / 150 + rng.normal(0, 0.15)))
    raw = _grad_record(rng, cos)
    rec = {
        "step": step,
        "epoch": step // 50,
        "losses": {"sup": float(rng.uniform(1, 2)), "unsup": float(rng.uniform(2, 4))},
        "raw": {"last_block": raw, "all": _grad_record(rng, cos / 2)} if grouped else raw,
        "feature": {
            g: {"cos_mean": float(rng.normal(0, 0.2)), "conflict_frac": 0.4, "n": 32}
            for g in ("labeled", "unlabeled", "unlabeled_old", "unlabeled_new")
        },
        "energy": {
            "ratio": {g: _summary(rng, 0.6, 0.1) for g in ("labeled", "unlabeled")},
            "free_energy": {"labeled": _summary(rng, -3, 0.5)},
        },
    }
    if eagc:
        fixed = _grad_record(rng, float(min(1.0, cos + 0.3)))
        rec["eagc"] = {"last_block": fixed} if grouped else fixed
        rec["energy"]["eep_weight"] = _summary(rng, 0.25, 0.05)
    if step % 20 == 0:
        rec["probeset"] = {"soc": float(0.5 + 0.3 * np.exp(-step / 100))}
    if step == 30:  # a zero-norm step: the probe stores NaN (null) and says why
        target = rec["raw"]["last_block"] if grouped else rec["raw"]
        target["cos"] = float("nan")
        rec["nan"] = {"raw.last_block.cos": "norm of g_U is zero"}
    return rec


def feature_arrays(rng, n_per_class: int, dim: int, n_classes: int = len(CLASS_NAMES)) -> dict:
    """Gaussian blobs, half the old-class rows labeled, novel = classes from ``N_OLD`` on."""
    centers = rng.normal(0, 0.6, size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = centers[labels] + rng.normal(0, 1, size=(labels.size, dim))
    novel = labels >= N_OLD
    labeled = ~novel & (rng.random(labels.size) < 0.5)
    logits = features[:, :n_classes] + rng.normal(0, 0.5, size=(labels.size, n_classes))
    return {
        "features": features.astype(np.float32),
        "labels": labels,
        "labeled": labeled,
        "novel": novel,
        "logits": logits.astype(np.float32),
    }


def make_run(
    path: Path,
    *,
    name: str,
    eagc: bool = False,
    complete: bool = True,
    torn: bool = False,
    grouped: bool = True,
    n_steps: int = 120,
    n_per_class: int = 30,
    dim: int = 16,
    feature_epochs: tuple[int, ...] = (0, 2),
    seed: int = 0,
    class_names: list[str] | None = None,
) -> Path:
    """Write a run directory and return its path."""
    rng = np.random.default_rng(seed)
    config = {
        "data": "synthetic-blobs",
        "eagc": eagc,
        "aperture": 2.0,
        "start": "reference" if eagc else "pretrained",
        "class_names": CLASS_NAMES if class_names is None else class_names,
        "lr": 0.01,
    }
    writer = RunWriter(path, config=config, seed=seed, device="cpu", name=name)
    with writer:
        for step in range(n_steps):
            writer.write_step(step_record(rng, step, eagc=eagc, grouped=grouped))
        for epoch in range(3):
            acc_old = 0.6 + 0.05 * epoch
            acc_new = 0.3 + 0.08 * epoch + (0.05 if eagc else 0.0)
            writer.write_epoch(
                {
                    "epoch": epoch,
                    "step": 50 * epoch,
                    "acc_all": (acc_old + acc_new) / 2,
                    "acc_old": acc_old,
                    "acc_new": acc_new,
                    "soc": 0.6 - 0.05 * epoch,
                    "principal_angles": [0.1, 0.3, 0.6],
                    "knn_overlap": {"new_to_old": 0.2, "old_to_new": 0.1},
                    "conceptor": {"quota": 0.5, "effective_rank": 9.0},
                }
            )
            if epoch in feature_epochs:
                writer.save_features(epoch, **feature_arrays(rng, n_per_class, dim))
        if complete:
            writer.finish({"acc_all": 0.5})
    if torn:
        with open(Path(path) / "steps.jsonl", "ab") as fh:
            fh.write(b'{"step": 999, "raw": {"cos": 0.')
    return Path(path)


def make_pair(root: Path, *, name_a: str = "baseline", name_b: str = "eagc-crashed"):
    """A finished baseline run and an unfinished EAGC run with a torn last line."""
    a = make_run(root / "baseline", name=name_a, seed=1, grouped=True)
    b = make_run(
        root / "eagc", name=name_b, eagc=True, complete=False, torn=True, grouped=False, seed=2
    )
    return a, b
