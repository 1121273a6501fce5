"""One evaluation of a GCD model: embed, cluster accuracy, SOC / energies, features, record.

The one implementation behind the recipe's per-epoch evaluation (``entangle.gcd.evaluate``)
and :meth:`entangle.Probe.record_epoch`, the call a user's own loop makes once per
evaluation. The epoch record's keys are listed in docs/records.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from contextlib import nullcontext

import torch

from entangle.defaults import APERTURE, KNN_K, SOC_K
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.metrics import cluster_accuracies, knn_overlap
from entangle.metrics.clustering import DEFAULT_PROTOCOL, accuracy_protocols
from entangle.nn.modes import eval_mode
from entangle.probing.probeset import summarize_subspace
from entangle.runs import keys

# the protocol SimGCD and EAGC report (metrics.clustering.DEFAULT_PROTOCOL)
ACCURACY_DEFAULT = (DEFAULT_PROTOCOL,)


def logits_of(output) -> torch.Tensor:
    """The logits of a head's output: the tensor itself, or the last item of a tuple
    (SimGCD's ``DINOHead`` returns ``(projection, logits)``)."""
    return output[-1] if isinstance(output, list | tuple) else output


def embed_batches(
    backbone,
    head,
    batches: Iterable[torch.Tensor],
    device,
    *,
    autocast=None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features and head logits of every input batch, in eval and inference mode.

    Args:
        backbone: ``x [b, ...] -> [b, D]``.
        head: ``z -> logits`` or ``z -> (proj, logits)``, or None for features only.
        batches: input tensors ``[b, ...]`` (moved to ``device`` one at a time).
        device: where the models run.
        autocast: a context manager to run the forward in (e.g. bf16 autocast on CUDA).
        on_batch: called with the number of rows done after each batch.

    Returns:
        ``(features [n, D], logits [n, K] or None)``, float32, on ``device``.
    """
    feats, logits = [], []
    done = 0
    models = [m for m in (backbone, head) if m is not None]
    with eval_mode(*models), torch.inference_mode(), autocast or nullcontext():
        for x in batches:
            z = backbone(x.to(device))
            feats.append(z.float())
            if head is not None:
                logits.append(logits_of(head(z)).float())
            done += x.shape[0]
            if on_batch is not None:
                on_batch(done)
    if not feats:
        raise EntangleValueError("the evaluation loader yielded no batches")
    return torch.cat(feats), (torch.cat(logits) if head is not None else None)


def epoch_record(
    features: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor,
    labeled: torch.Tensor,
    novel: torch.Tensor,
    *,
    accuracy=ACCURACY_DEFAULT,
    k: int = SOC_K,
    aperture: float = APERTURE,
    knn_rows: torch.Tensor | None = None,
) -> tuple[dict, dict]:
    """The epoch record and the per-sample arrays of one evaluation.

    The one record behind the recipe's evaluation, :meth:`entangle.Probe.record_epoch` and
    ``entangle analyze`` (which adds k-means, free energy and the t-SNE map's overlap in
    :func:`entangle.analysis.features.feature_record`): identical features give identical
    fields.

    Args:
        features: ``[n, D]`` features of every evaluated sample.
        logits: ``[n, K]`` head logits (predictions are their argmax), or None.
        labels: ``[n]`` ground-truth classes.
        labeled: ``[n]`` bool, labeled rows (Z_old for SOC and the conceptor).
        novel: ``[n]`` bool, rows whose ground-truth class is novel.
        accuracy: clustering-accuracy protocols on the unlabeled rows, ``"v1,v2,v2b"`` or a
            sequence (see docs/accuracy.md); the first fills ``acc_*``. Default ``v2``: one
            Hungarian assignment over all classes, as SimGCD and EAGC report.
        k: SOC subspace dimension, capped at the rank of the centred labeled set (the record's
            ``k`` says which k was used).
        aperture: conceptor aperture for the energy ratios.
        knn_rows: ``[m]`` row indices the k-NN overlap runs over (analyze: the unlabeled rows
            of the t-SNE subsample); default every unlabeled row.

    Returns:
        ``(record, arrays)``: ``record`` holds ``acc_all/old/new``, ``acc_protocol`` and
        ``acc_protocols`` (with logits), ``k``, ``soc``, ``principal_angles``, ``energy``,
        ``conceptor`` and ``knn_overlap`` (and ``nan_reason`` when the logits or features
        hold NaN or inf); ``arrays`` is what :meth:`RunWriter.save_features` takes.
    """
    n = features.shape[0]
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    labeled = _mask(labeled, n, "labeled")
    novel = _mask(novel, n, "novel") & ~labeled
    if labels.shape[0] != n:
        raise EntangleValueError(f"{labels.shape[0]} labels for {n} feature rows")
    unl = ~labeled
    record: dict = {}
    if logits is not None and unl.any():
        pred = logits.argmax(1).cpu()
        acc = accuracy_fields(labels[unl], pred[unl], ~novel[unl], accuracy)
        if not bool(torch.isfinite(logits).all()):
            # argmax of NaN logits is a constant class: an accuracy of it would be made up
            acc = _nan_numbers(acc)
            record["nan_reason"] = "the logits hold NaN or inf (training diverged?)"
        record.update(acc)
    n_labeled = int(labeled.sum())
    if n_labeled >= 2 and novel.any():
        lab, nov = labeled.to(features.device), novel.to(features.device)
        # The cap is the rank of the centred labeled set (and D), the one limit SOC has
        # (metrics.soc: NaN beyond it), as docs/records.md promises. The novel set is only
        # projected, so its size does not lower k: SOC keeps the run's k, and with fewer than
        # k + 1 novel rows only the principal angles are NaN (their own rank limit). analyze
        # once also capped at novel rows - 1, which changed SOC's k to suit the angles.
        k = max(1, min(int(k), n_labeled - 1, features.shape[1]))
        record.update(summarize_subspace(features, lab, nov, k, aperture))
    rows = torch.nonzero(unl).flatten() if knn_rows is None else torch.as_tensor(knn_rows)
    _add_knn_overlap(record, features, novel, rows.long().cpu())
    arrays = {
        "features": features.cpu(),
        "labels": labels,
        "labeled": labeled,
        "novel": novel,
    }
    if logits is not None:
        arrays["logits"] = logits.cpu()
    return record, arrays


def _add_knn_overlap(record: dict, features, novel: torch.Tensor, rows: torch.Tensor) -> None:
    """``record["knn_overlap"]``: :func:`entangle.metrics.knn_overlap` at ``KNN_K`` over
    ``features[rows]`` (``[n, D]``, ``[n]`` bool, ``[m]`` indices).

    k is fixed (docs/records.md: k = 10) so the key always means one k: rows with one group
    empty, or no more than ``KNN_K`` of them, give no overlap rather than one at a smaller k
    (the probe once shrank k to the row count without saying so). Non-finite feature rows
    give NaN shares (the chance levels are counts' and stay) and ``nan_reason``.
    """
    rows_new = novel[rows]
    if not 0 < int(rows_new.sum()) < len(rows) or len(rows) <= KNN_K:
        return
    z = features[rows.to(features.device)]
    overlap = knn_overlap(z, rows_new, k=KNN_K)
    if not bool(torch.isfinite(z).all()):  # neighbours of NaN rows are arbitrary
        overlap = {k: v if k.endswith("_chance") else float("nan") for k, v in overlap.items()}
        record.setdefault("nan_reason", "the features hold NaN or inf (training diverged?)")
    record["knn_overlap"] = overlap


def accuracy_fields(
    y_true, y_pred, old_mask, protocols=ACCURACY_DEFAULT, prefix: str = "acc"
) -> dict:
    """Record fields of clustering accuracy under each protocol (see docs/accuracy.md).

    Args:
        y_true, y_pred, old_mask: ``[n]`` as for :func:`entangle.metrics.cluster_accuracy`.
        protocols: protocol names (or ``"v1,v2"``); the first one fills ``{prefix}_all/_old/_new``.
        prefix: field name prefix (``acc`` for the head, ``kmeans`` for k-means).

    Returns:
        ``{prefix}_all``, ``{prefix}_old``, ``{prefix}_new``, ``{prefix}_protocol`` (the first
        protocol's name) and ``{prefix}_protocols`` (``{protocol: {all, old, new}}``).
    """
    by_protocol = cluster_accuracies(y_true, y_pred, old_mask, accuracy_protocols(protocols))
    first = next(iter(by_protocol))
    out = {f"{prefix}_{k}": v for k, v in by_protocol[first].items()}
    out[f"{prefix}_protocol"] = first
    out[f"{prefix}_protocols"] = by_protocol
    return out


def evaluate_loader(
    backbone, head, loader, *, rows: dict, accuracy, k: int, aperture: float, autocast=None
) -> tuple[dict, dict]:
    """Embed ``loader`` on the backbone's device and compute its epoch record and arrays.

    ``rows``: ``labeled`` / ``novel`` / ``old_classes`` as :func:`loader_rows` takes them;
    the rest as :func:`epoch_record` (:meth:`entangle.Probe.record_epoch`'s body).
    """
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs, finish = loader_rows(loader, **rows)
    z, logits = embed_batches(backbone, head, inputs, device, autocast=autocast)
    labels, labeled, novel = finish()
    return epoch_record(
        z, logits, labels, labeled, novel, accuracy=accuracy, k=k, aperture=aperture
    )


def write_epoch(run, epoch: int, step: int | None, record: dict, arrays: dict | None) -> dict:
    """Write one evaluation: ``{"epoch", "step"} | record`` to epochs.jsonl, arrays to features/.

    Returns:
        the record as written.
    """
    full = {keys.EPOCH: int(epoch)}
    if step is not None:
        full[keys.STEP] = int(step)
    full |= record
    run.write_epoch(full)
    if arrays is not None:
        run.save_features(int(epoch), **arrays)
    return full


def loader_rows(
    loader: Iterable,
    *,
    labeled: torch.Tensor | None = None,
    novel: torch.Tensor | None = None,
    old_classes: int | Collection[int] | None = None,
):
    """Split an evaluation loader into input batches and ``(labels, labeled, novel)``.

    A batch is ``(x, labels, ...)``; ``x`` may be a list of views (the first is used). When
    ``labeled`` is not given, a 4th item (SimGCD's ``mask_lab``) marks labeled rows, else every
    row counts as unlabeled. ``novel`` is given per row, or derived from ``old_classes`` (an
    int K: classes 0..K-1 are old, as SimGCD's ``range(len(train_classes))``; or the old
    class ids).

    Returns:
        ``(inputs, finish)``: ``inputs`` yields the input batches; after it is exhausted,
        ``finish()`` returns ``(labels [n], labeled [n], novel [n])``.
    """
    if (novel is None) == (old_classes is None):
        raise EntangleValueError(
            "record_epoch needs exactly one of novel= ([n] bool, rows of novel classes) or "
            "old_classes= (the number of old classes, or their ids)"
        )
    labels, masks = [], []

    def inputs():
        for batch in loader:
            if not isinstance(batch, list | tuple) or len(batch) < 2:
                raise EntangleTypeError(
                    f"record_epoch: each batch must be (x, labels, ...), got {type(batch).__name__}"
                )
            x = batch[0][0] if isinstance(batch[0], list | tuple) else batch[0]
            labels.append(torch.as_tensor(batch[1]).reshape(-1).cpu())
            if labeled is None and len(batch) >= 4:
                masks.append(torch.as_tensor(batch[3]).reshape(-1).bool().cpu())
            yield x

    def finish():
        y = torch.cat(labels).long()
        if labeled is not None:
            lab = labeled
        elif masks:
            lab = torch.cat(masks)
        else:
            lab = torch.zeros(y.shape[0], dtype=torch.bool)
        if novel is not None:
            nov = novel
        elif isinstance(old_classes, int):
            nov = y >= old_classes
        else:
            nov = ~torch.isin(y, torch.as_tensor(sorted(old_classes), dtype=torch.long))
        return y, _mask(lab, y.shape[0], "labeled"), _mask(nov, y.shape[0], "novel")

    return inputs(), finish


def _mask(mask, n: int, name: str) -> torch.Tensor:
    mask = torch.as_tensor(mask).reshape(-1).bool().cpu()
    if mask.shape[0] != n:
        raise EntangleValueError(
            f"{name} has {mask.shape[0]} entries but the evaluation has {n} rows; pass one per "
            "row, in the loader's order (use shuffle=False)"
        )
    return mask


def _nan_numbers(tree):
    """``tree`` with every float replaced by NaN (counts, names and flags kept)."""
    if isinstance(tree, dict):
        return {k: _nan_numbers(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_nan_numbers(v) for v in tree]
    return float("nan") if isinstance(tree, float) else tree
