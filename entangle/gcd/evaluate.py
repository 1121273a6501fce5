"""Per-epoch evaluation of a GCD model and the DONE summary of a run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from entangle.gcd.data import GCDData, eval_inputs
from entangle.metrics import cluster_accuracies, knn_overlap
from entangle.modes import eval_mode
from entangle.probeset import summarize_subspace
from entangle.runs import RunReader


def embed_all(
    backbone,
    head,
    data: GCDData,
    device,
    *,
    batch_size: int = 512,
    transform=None,
    autocast=None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features and head logits of every sample, batched, in eval and inference mode.

    Args:
        backbone: ``x -> [b, D]``.
        head: ``z -> (proj, logits)``, or None for features only.
        data: the samples (un-augmented inputs through ``eval_inputs``).
        device: where the models run.
        transform: image transform for image data (default: the GCD test transform).
        autocast: a context manager to run the forward in (e.g. bf16 autocast on CUDA).
        on_batch: called with ``(rows done, rows total)`` after each batch.

    Returns:
        ``(features [n, D], logits [n, K] or None)``, float32, on ``device``.
    """
    feats, logits = [], []
    n = len(data)
    models = [m for m in (backbone, head) if m is not None]
    with eval_mode(*models), torch.inference_mode(), autocast or nullcontext():
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(start + batch_size, n))
            z = backbone(eval_inputs(data, rows, transform).to(device))
            feats.append(z.float())
            if head is not None:
                logits.append(head(z)[1].float())
            if on_batch is not None:
                on_batch(int(rows[-1]) + 1, n)
    return torch.cat(feats), (torch.cat(logits) if head is not None else None)


def accuracy_fields(y_true, y_pred, old_mask, protocols=("v2",), prefix: str = "acc") -> dict:
    """Record fields of clustering accuracy under each protocol (see docs/accuracy.md).

    Args:
        y_true, y_pred, old_mask: ``[n]`` as for :func:`entangle.metrics.cluster_accuracy`.
        protocols: protocol names; the first one fills ``{prefix}_all/_old/_new``.
        prefix: field name prefix (``acc`` for the head, ``kmeans`` for k-means).

    Returns:
        ``{prefix}_all``, ``{prefix}_old``, ``{prefix}_new``, ``{prefix}_protocol`` (the first
        protocol's name) and ``{prefix}_protocols`` (``{protocol: {all, old, new}}``).
    """
    by_protocol = cluster_accuracies(y_true, y_pred, old_mask, protocols)
    first = next(iter(by_protocol))
    out = {f"{prefix}_{k}": v for k, v in by_protocol[first].items()}
    out[f"{prefix}_protocol"] = first
    out[f"{prefix}_protocols"] = by_protocol
    return out


def evaluate(
    backbone,
    head,
    data: GCDData,
    device,
    batch_size: int = 512,
    accuracy=("v2",),
    *,
    k: int = 16,
    aperture: float = 2.0,
) -> dict:
    """Features of every sample, clustering accuracy on the unlabeled set, SOC, energies.

    Args:
        accuracy: accuracy protocols (``v1``, ``v2``, ``v2b``); the first fills ``acc_*``.
        k: SOC / principal-angle subspace dimension (the run's ``soc_k``; clamped to the
            labeled count - 1).
        aperture: aperture of the conceptor refitted on the labeled features (the run's).

    Returns:
        ``(record, arrays)``: the epoch record and the arrays to save in features/.
    """
    z, logit = embed_all(backbone, head, data, device, batch_size=batch_size)
    unl = ~data.labeled
    labels = data.labels
    pred = logit.argmax(1).cpu()
    old_mask = ~data.novel[unl]
    record = accuracy_fields(labels[unl], pred[unl], old_mask, accuracy)
    lab, nov = data.labeled.to(z.device), (data.novel & unl).to(z.device)
    k = max(1, min(int(k), int(data.labeled.sum()) - 1))
    record.update(summarize_subspace(z, lab, nov, k, aperture))
    record["knn_overlap"] = knn_overlap(z[unl.to(z.device)], data.novel[unl], k=10)
    arrays = {
        "features": z.cpu(),
        "labels": labels,
        "labeled": data.labeled,
        "novel": data.novel,
        "logits": logit.cpu(),
    }
    return record, arrays


def run_summary(reader: RunReader) -> dict:
    """The DONE summary of a run (keys: docs/records.md).

    The headline GDC and ProbeSet SOC are means over the first ``EARLY_STEPS`` (200) probed
    training steps, the paper's window (``gdc_early``, ``soc_early``); the whole-run means
    (``gdc_mean``, ``soc_all``) and the last epoch's SOC over all samples (``soc``) stand
    beside them. Cosine and conflict rate: raw gradients of the last block, every probed step.

    The numbers come from the report's summary table (one implementation of each statistic).
    """
    from entangle.report.summary import EARLY_STEPS
    from entangle.report.summary import run_summary as summary_table

    table = summary_table(reader.steps, reader.epochs, "last_block")
    out = {
        "acc_all": table["acc_all_last"],
        "acc_old": table["acc_old_last"],
        "acc_new": table["acc_new_last"],
        "early_steps": EARLY_STEPS,
        "gdc_early": table["gdc_early_raw"],
        "soc_early": table["soc_early"],
        "gdc_mean": table["gdc_all_raw"],
        "soc_all": table["soc_all"],
        "soc": table["soc_last_epoch"],
        "cos_mean": table["cos_mean_raw"],
        "conflict_rate": table["conflict_rate_raw"],
        "steps_probed": table["steps"],
        "nan_steps": table["nan_steps"],
    }
    if any("eagc" in step for step in reader.steps):
        out["cos_mean_eagc"] = table["cos_mean_eagc"]
        out["gdc_early_eagc"] = table["gdc_early_eagc"]
        out["gdc_mean_eagc"] = table["gdc_all_eagc"]
    return out
