"""Feature-level analyses of one checkpoint: embedding, clustering accuracy, subspace, energy.

Every number comes from :mod:`entangle.metrics` (the shared fields through
:func:`entangle.probing.evaluation.epoch_record`, which calls it); this module only chooses
the rows each metric sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch

from entangle.data.augment import gcd_transform
from entangle.data.datasets import GCDData
from entangle.defaults import APERTURE, KNN_K, SOC_K
from entangle.gcd.evaluate import embed_all
from entangle.metrics import free_energy, knn_overlap

# _nan_numbers: the NaN-filled record evaluation itself writes for NaN logits, one rule
from entangle.probing.evaluation import (
    ACCURACY_DEFAULT,
    _nan_numbers,
    accuracy_fields,
    epoch_record,
)
from entangle.probing.summaries import masked_summary, to_host

Progress = Callable[[str, int, int, str], None]


def input_transform(backbone: torch.nn.Module, data: GCDData, train: bool = False):
    """The eval (or train) transform for image data, at the ViT's input size; None otherwise."""
    if data.in_memory:
        return None
    cfg = getattr(backbone, "config", None)
    size = getattr(cfg, "img_size", 224)
    return gcd_transform("train" if train else "test", image_size=size)


def _autocast(device: torch.device):
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def embed(
    backbone: torch.nn.Module,
    head: torch.nn.Module | None,
    data: GCDData,
    device: torch.device,
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and head logits) of every sample, batched, in inference mode.

    On CUDA the forward runs under autocast (bfloat16 where supported); results are float32.

    Returns:
        ``(features [n, D], logits [n, K] or None)`` on the CPU.
    """

    def on_batch(done: int, total: int) -> None:
        if progress is not None:
            progress("features", done, total, "")

    z, logits = embed_all(
        backbone,
        head,
        data,
        device,
        batch_size=batch_size,
        transform=input_transform(backbone, data),
        autocast=_autocast(device),
        on_batch=on_batch,
    )
    return z.cpu(), (logits.cpu() if logits is not None else None)


def kmeans_predictions(features: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """k-means (scikit-learn) cluster ids ``[n]`` of L2-normalised features ``[n, D]``.

    Rows are normalised because the GCD heads classify by cosine; k-means runs on all samples
    (labeled and unlabeled), as the GCD k-means baseline does.
    """
    from sklearn.cluster import KMeans

    x = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def feature_record(
    features: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor,
    labeled: torch.Tensor,
    novel: torch.Tensor,
    *,
    num_classes: int,
    kmeans: bool = True,
    tsne: bool = True,
    soc_k: int = SOC_K,
    aperture: float = APERTURE,
    seed: int = 0,
    tsne_max_points: int = 5000,
    accuracy: Sequence[str] = ACCURACY_DEFAULT,
    logit_temperature: float = 1.0,
) -> tuple[dict, dict]:
    """The epoch record of one analysed checkpoint and the extra arrays to save.

    The record is :func:`entangle.probing.evaluation.epoch_record`'s (the one the recipe and
    ``Probe.record_epoch`` write, same caps and NaN handling), plus k-means, free energy and
    the t-SNE map's k-NN overlap.

    Args:
        features: ``[n, D]`` every sample's features.
        logits: ``[n, K]`` head logits, or None (no head accuracy, no free energy).
        labels, labeled, novel: ``[n]`` ground truth and masks.
        num_classes: clusters for k-means (the data's class count).
        kmeans, tsne: run those analyses.
        soc_k: SOC subspace dimension (capped at the rank of the centred labeled set).
        aperture: conceptor aperture for energy ratios.
        logit_temperature: T of the classifier's softmax (SimGCD: 0.1); the free energy is
            -logsumexp(logits / T), recorded as ``free_energy_temperature``.
        accuracy: accuracy protocols (``v1``, ``v2``, ``v2b``, see docs/accuracy.md); the
            first one fills ``acc_*`` and ``kmeans``.

    Returns:
        ``(record, arrays)``: ``record`` holds the epoch record's keys (``acc_*``, ``soc``,
        ``principal_angles``, ``k``, ``energy``, ``conceptor``, ``knn_overlap``), and
        ``soc_k`` (= ``k``), ``kmeans`` {all, old, new} (and ``kmeans_protocol`` /
        ``kmeans_protocols``), ``free_energy``, ``knn_overlap_tsne`` over the same
        ``knn_rows`` unlabeled rows as ``knn_overlap``;
        ``arrays`` extra per-sample arrays (``kmeans``, ``tsne``, ``tsne_rows``).
    """
    z = features.float()
    labeled, novel = labeled.bool(), novel.bool()
    unl = ~labeled
    arrays: dict = {}
    # a checkpoint saved after non-finite losses (train --on-nan continue) embeds to NaN:
    # k-means and the t-SNE map cannot run on it; their numbers are NaN with the reason
    bad_rows = int((~torch.isfinite(z).all(dim=1)).sum()) if z.ndim == 2 else 0
    why = f"{bad_rows} of {len(z)} samples have NaN or inf features (training diverged?)"
    rows, coords = _map_rows(z, labels, unl, tsne and not bad_rows, seed, tsne_max_points, arrays)
    record, _ = epoch_record(
        z,
        logits,
        labels,
        labeled,
        novel,
        accuracy=accuracy,
        k=soc_k,
        aperture=aperture,
        knn_rows=rows,
    )
    if kmeans:
        pred = kmeans_predictions(z, num_classes, seed) if not bad_rows else None
        record.update(_kmeans_fields(pred, labels, unl, novel, accuracy, why))
        if pred is not None:
            arrays["kmeans"] = pred
    if "k" in record:
        record["soc_k"] = record["k"]  # analyze's name for it (docs/quantities.md)
    if logits is not None:
        record.update(_free_energy_fields(logits, logit_temperature, labeled, novel))
    if "knn_overlap" in record:
        record["knn_rows"] = len(rows)
        if coords is not None:
            record["knn_overlap_tsne"] = knn_overlap(
                torch.from_numpy(coords), novel[rows], k=KNN_K, metric="euclidean"
            )
    return record, arrays


def _map_rows(z, labels, unl, tsne: bool, seed: int, max_points: int, arrays: dict):
    """The rows the k-NN overlap sees ``[m]`` and their t-SNE coordinates ``[m, 2]`` (or None).

    The unlabeled rows, of the map's subsample when t-SNE runs (the same rows in feature space
    and in the map); ``arrays`` gains the map (``tsne``, ``tsne_rows``). No map is made of NaN
    rows (``tsne`` False then): the k-NN overlap (NaN, with its reason) runs over every
    unlabeled row.
    """
    rows = torch.nonzero(unl).flatten()
    if not tsne or len(z) < 5:
        return rows, None
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.tsne import tsne_embed

    coords, kept = tsne_embed(z.numpy(), seed=seed, max_points=max_points, labels=labels.numpy())
    arrays["tsne"], arrays["tsne_rows"] = coords, kept
    kept = torch.as_tensor(np.asarray(kept), dtype=torch.long)
    in_map = unl[kept]
    return kept[in_map], np.asarray(coords, dtype=np.float32)[in_map.numpy()]


def _kmeans_fields(pred, labels, unl, novel, accuracy: Sequence[str], why: str) -> dict:
    """k-means accuracy over the unlabeled rows: ``kmeans`` {all, old, new} and its protocols.

    ``pred`` ``[n]`` cluster of each row, or None (NaN features): every number NaN, with
    ``kmeans_nan_reason`` = ``why``.
    """
    shown = torch.zeros_like(labels) if pred is None else torch.from_numpy(pred)
    fields = accuracy_fields(labels[unl], shown[unl], ~novel[unl], accuracy, "kmeans")
    out = {}
    if pred is None:
        fields = _nan_numbers(fields)
        out["kmeans_nan_reason"] = why
    out["kmeans"] = {k: fields.pop(f"kmeans_{k}") for k in ("all", "old", "new")}
    return out | fields


def _free_energy_fields(logits, temperature: float, labeled, novel) -> dict:
    """``free_energy`` of ``logits`` ``[n, K]`` at ``temperature``, summarized by group."""
    fe = free_energy(logits.float() / temperature)
    unl = ~labeled
    groups = {"labeled": labeled, "unlabeled_old": unl & ~novel, "unlabeled_new": novel & unl}
    return {
        "free_energy": to_host({g: masked_summary(fe, m) for g, m in groups.items()}),
        "free_energy_temperature": float(temperature),
    }
