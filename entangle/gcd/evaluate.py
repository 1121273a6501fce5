"""Per-epoch evaluation of a GCD model and the DONE summary of a run."""

from __future__ import annotations

from collections.abc import Callable

import torch

from entangle.data.datasets import GCDData, default_workers, eval_batches
from entangle.defaults import APERTURE, SOC_K
from entangle.probing.evaluation import (
    ACCURACY_DEFAULT,
    accuracy_fields,
    embed_batches,
    epoch_record,
)
from entangle.runs import keys
from entangle.runs.directory import RunReader
from entangle.runs.records import accuracy_protocol
from entangle.runs.summary import EARLY_STEPS
from entangle.runs.summary import run_summary as summary_table

# accuracy_fields lives with the evaluation code in entangle.probing.evaluation; re-exported
# for callers
__all__ = ["accuracy_fields", "embed_all", "evaluate", "run_summary"]


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
    workers: int | None = None,
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
        workers: DataLoader workers decoding image batches (None: ``default_workers()``;
            the features do not depend on it).

    Returns:
        ``(features [n, D], logits [n, K] or None)``, float32, on ``device``.
    """
    n = len(data)
    device = torch.device(device)
    batches = eval_batches(
        data,
        batch_size,
        transform,
        workers=default_workers() if workers is None else workers,
        pin_memory=device.type == "cuda",
    )
    progress = None if on_batch is None else (lambda done: on_batch(done, n))
    return embed_batches(backbone, head, batches, device, autocast=autocast, on_batch=progress)


def evaluate(
    backbone,
    head,
    data: GCDData,
    device,
    batch_size: int = 512,
    accuracy=ACCURACY_DEFAULT,
    *,
    k: int = SOC_K,
    aperture: float = APERTURE,
    workers: int | None = None,
) -> tuple[dict, dict]:
    """Features of every sample, clustering accuracy on the unlabeled set, SOC, energies.

    Args:
        accuracy: accuracy protocols (``v1``, ``v2``, ``v2b``); the first fills ``acc_*``.
        k: SOC / principal-angle subspace dimension (the run's ``soc_k``; capped at the rank
            of the centred labeled features).
        aperture: aperture of the conceptor refitted on the labeled features (the run's).
        workers: DataLoader workers for image data (see :func:`embed_all`).

    Returns:
        ``(record, arrays)``: the epoch record and the arrays to save in features/ (see
        :func:`entangle.probing.evaluation.epoch_record`).
    """
    z, logit = embed_all(backbone, head, data, device, batch_size=batch_size, workers=workers)
    return epoch_record(
        z, logit, data.labels, data.labeled, data.novel, accuracy=accuracy, k=k, aperture=aperture
    )


def run_summary(reader: RunReader) -> dict:
    """The DONE summary of a run (keys: docs/records.md).

    The headline GDC and ProbeSet SOC are means over the first ``EARLY_STEPS`` (200) probed
    training steps, the paper's window (``gdc_early``, ``soc_early``); the whole-run means
    (``gdc_mean``, ``soc_all``) and the last epoch's SOC over all samples (``soc``) stand
    beside them. Cosine and conflict rate: raw gradients of the last block, every probed step.

    The numbers come from runs/summary.py (one implementation of each statistic, the same the
    report's summary table shows).
    """
    table = summary_table(reader.steps, reader.epochs, keys.LAST_BLOCK)
    out = {
        keys.ACC_ALL: table["acc_all_last"],
        keys.ACC_OLD: table["acc_old_last"],
        keys.ACC_NEW: table["acc_new_last"],
        keys.ACC_PROTOCOL: accuracy_protocol(reader.epochs),
        keys.EARLY_STEPS_KEY: EARLY_STEPS,
        keys.done_gdc(keys.EARLY): table["gdc_early_raw"],
        keys.SOC_EARLY: table["soc_early"],
        keys.done_gdc(keys.MEAN): table["gdc_all_raw"],
        keys.SOC_ALL: table["soc_all"],
        keys.SOC_LAST_EPOCH: table["soc_last_epoch"],
        keys.done_cos_mean(): table["cos_mean_raw"],
        keys.CONFLICT_RATE: table["conflict_rate_raw"],
        keys.STEPS_PROBED: table["steps"],
        keys.NAN_STEPS: table["nan_steps"],
    }
    # the applied update's: EAGC's corrected (`eagc`), a gradient coordinator's `coordinated`
    for kind in keys.APPLIED_KINDS:
        if any(kind in step for step in reader.steps):
            out[keys.done_cos_mean(kind)] = table[f"cos_mean_{kind}"]
            out[keys.done_gdc(keys.EARLY, kind)] = table[f"gdc_early_{kind}"]
            out[keys.done_gdc(keys.MEAN, kind)] = table[f"gdc_all_{kind}"]
    return out
