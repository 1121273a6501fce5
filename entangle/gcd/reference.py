"""The frozen reference model EAGC anchors to: trained on labeled data only, as its authors do.

The EAGC authors' protocol (see docs/protocol.md): the trainable part of the backbone (the
last block) plus a head over the OLD classes only, cross-entropy of ``logits / 0.1`` on both
augmented views of every labeled sample, fresh views every epoch, SGD with SimGCD's
parameter groups and a per-epoch cosine schedule to ``lr * 1e-3`` (their scripts: 30
epochs, lr 0.02, batch 32, weight decay 1e-4, momentum 0.9).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from entangle.errors import EntangleValueError
from entangle.gcd.optim import simgcd_optimizer


def clone_module(module: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of ``module``, also one using legacy ``nn.utils.weight_norm``.

    ``copy.deepcopy`` refuses a module whose legacy weight norm keeps the computed weight as
    a non-leaf attribute (SimGCD's ``DINOHead``); that attribute is set aside for the copy and
    recomputed from ``weight_g`` / ``weight_v`` in it. ``module`` is left exactly as it was.
    """
    try:
        return copy.deepcopy(module)
    except RuntimeError as exc:
        if "graph leaves" not in str(exc):
            raise
    from torch.nn.utils.weight_norm import WeightNorm

    def norms(root):
        for sub in root.modules():
            for hook in sub._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm) and hook.name in sub.__dict__:
                    yield sub, hook

    stashed = [(sub, hook.name, sub.__dict__.pop(hook.name)) for sub, hook in norms(module)]
    try:
        clone = copy.deepcopy(module)
    finally:
        for sub, name, weight in stashed:
            sub.__dict__[name] = weight
    with torch.no_grad():  # the forward pre-hook recomputes it (with gradient) on every call
        for sub, hook in [(s, h) for s in clone.modules() for h in s._forward_pre_hooks.values()]:
            if isinstance(hook, WeightNorm):
                setattr(sub, hook.name, hook.compute_weight(sub))
    return clone


def reference_batch(batch, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x [m, ...], labels [m], labeled [m] or None)`` of one batch, views stacked.

    Accepts ``(x, labels)``, the EAGC authors' labeled-set batches ``(views, labels,
    uq_idxs)`` and SimGCD's training batches ``(views, labels, uq_idxs, mask_lab)`` (only the
    rows with ``mask_lab`` train; ``mask_lab`` may be ``[b]`` or SimGCD's ``[b, 1]``).
    ``views`` is a list of ``[b, ...]`` tensors (one per view) or one tensor.
    """
    items = tuple(batch) if isinstance(batch, list | tuple) else ()
    if len(items) not in (2, 3, 4):
        raise EntangleValueError(
            "train_reference: a batch must be (x, labels), (views, labels, uq_idxs) or "
            f"(views, labels, uq_idxs, mask_lab); got {type(batch).__name__} of "
            f"{len(items) if items else 'unknown'} items"
        )
    x, labels = items[0], torch.as_tensor(items[1])
    mask = None if len(items) < 4 else torch.as_tensor(items[3])
    n_views = 1
    if isinstance(x, list | tuple):
        n_views = len(x)
        x = torch.cat([torch.as_tensor(v) for v in x])
    labels = labels.reshape(-1).to(device).repeat(n_views)
    if mask is not None:
        mask = mask.reshape(mask.shape[0], -1)[:, 0].to(device).bool().repeat(n_views)
    return x.to(device), labels, mask


def _check_labels(labels, mask, num_classes: int) -> None:
    """One host sync on the first batch: labels must index the head's (old) classes."""
    used = labels if mask is None else labels[mask]
    if used.numel() and (int(used.min()) < 0 or int(used.max()) >= num_classes):
        raise EntangleValueError(
            f"train_reference: labeled rows carry classes {int(used.min())}..{int(used.max())} "
            f"but the head has {num_classes} outputs; the reference head is over the old "
            "classes only: number them 0..n_old-1 (as SimGCD's datasets do)"
        )


def _cross_entropy(logits, labels, mask) -> torch.Tensor:
    """Mean CE over the rows where ``mask`` (all rows when None); 0 without such rows."""
    if mask is None:
        return F.cross_entropy(logits, labels)
    # masked mean, no boolean indexing (no host sync); unlabeled rows' labels are never read
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    per_row = F.cross_entropy(logits, safe, reduction="none")
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum() / mask.sum().clamp_min(1)


def train_reference(
    backbone: torch.nn.Module,
    head: torch.nn.Module,
    labeled_loader: Iterable,
    *,
    epochs: int = 30,
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    temperature: float = 0.1,
    device: torch.device | str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Train copies of the trainable part of ``backbone`` + ``head`` on labeled data (CE).

    Which parameters train is decided by the inputs' ``requires_grad`` flags (SimGCD: the last
    block and the head), so the reference shares the frozen prefix bit for bit with the live
    model and :class:`~entangle.nn.prefix.SharedPrefix` can fork after it. Defaults are the EAGC
    authors' (scripts/SimGCD/train_*.sh, methods/SimGCD.py; see docs/protocol.md).

    Args:
        backbone: ``x -> [n, D]``; copied, not modified.
        head: ``z -> (proj, logits)`` or ``z -> logits`` over the OLD classes (e.g. SimGCD's
            ``DINOHead(out_dim=n_old)``, legacy weight norm included); copied, not modified.
        labeled_loader: re-iterable batches (iterated once per epoch: give it fresh
            augmentation per pass), each ``(x, labels)``, ``(views, labels, uq_idxs)`` or
            SimGCD's ``(views, labels, uq_idxs, mask_lab)``; see :func:`reference_batch`.
            Labels are old-class indices ``0..n_old-1``.
        epochs, lr, momentum, weight_decay: SGD over SimGCD's parameter groups (no weight
            decay on biases and 1-D parameters), cosine per epoch to ``lr * 1e-3``.
        temperature: logits are divided by it before the cross-entropy (SimGCD uses 0.1).
        device: defaults to the backbone's device.
        on_epoch: called with ``(epoch, mean_loss)`` after every epoch (progress display).
        progress: draw a rich progress bar on stderr (epochs, batches of a sized loader,
            rate, ETA, last epoch's loss). ``None``: drawn when stderr is a terminal and no
            ``on_epoch`` is given (the CLI passes its own display through ``on_epoch``).

    Returns:
        ``(reference_backbone, reference_head)``, frozen and in eval mode.
    """
    ref_backbone, ref_head = clone_module(backbone), clone_module(head)
    if device is None:
        device = next(backbone.parameters()).device
    ref_backbone.to(device).train()
    ref_head.to(device).train()
    if not any(p.requires_grad for m in (ref_backbone, ref_head) for p in m.parameters()):
        raise EntangleValueError("train_reference: nothing to train (all parameters frozen)")
    opt, sched = simgcd_optimizer(
        (ref_backbone, ref_head),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        epochs=epochs,
    )
    bar = _EpochBar(epochs, labeled_loader, progress, on_epoch is None)
    checked = False
    with bar:
        for epoch in range(epochs):
            model = (ref_backbone, ref_head)
            total, batches, checked = _reference_epoch(
                model, labeled_loader, opt, device, temperature, epoch, bar, checked
            )
            sched.step()
            if batches == 0:
                raise EntangleValueError("train_reference: the labeled loader yielded no batches")
            mean = float(total) / batches
            bar.epoch(epoch, mean)
            if on_epoch is not None:
                on_epoch(epoch, mean)
    for m in (ref_backbone, ref_head):
        m.eval()
        m.requires_grad_(False)
    return ref_backbone, ref_head


def _reference_epoch(model, loader, opt, device, temperature, epoch, bar, checked):
    """One epoch of the reference's cross-entropy over ``loader``.

    ``model`` is ``(backbone, head)``; the labels are checked on the first batch of the run
    (``checked`` False). Returns ``(summed loss, a 0-d tensor; batches; checked)``.
    """
    backbone, head = model
    total, batches = 0.0, 0
    for batch in loader:
        x, labels, mask = reference_batch(batch, device)
        out = head(backbone(x))
        logits = out[1] if isinstance(out, tuple) else out
        if not checked:
            _check_labels(labels, mask, logits.shape[1])
            checked = True
        loss = _cross_entropy(logits / temperature, labels, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
        batches += 1
        bar.batch(epoch, batches)
    return total, batches, checked


class _EpochBar:
    """train_reference's own progress bar: epochs (fractional by batch), rate, ETA, loss.

    Off unless asked for or stderr is a terminal; the mean loss is read once per epoch (the
    one GPU sync train_reference has anyway), never per batch.
    """

    def __init__(self, epochs: int, loader, progress: bool | None, default: bool):
        from rich.console import Console

        console = Console(stderr=True, emoji=False)
        self.shown = (console.is_terminal and default) if progress is None else progress
        self.epochs = epochs
        try:
            self.per_epoch = len(loader)  # an unsized loader advances once per epoch
        except TypeError:
            self.per_epoch = None
        self.bar = self.task = None
        if self.shown:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]reference[/] epoch {task.fields[epoch]}/{task.total:.0f}"),
                BarColumn(bar_width=24),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                console=console,
            )
            self.task = self.bar.add_task("reference", total=epochs, epoch=0, note="")

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def batch(self, epoch: int, batches: int) -> None:
        if self.bar is not None and self.per_epoch:
            done = epoch + min(batches / self.per_epoch, 1.0)
            self.bar.update(self.task, completed=done, epoch=epoch + 1)

    def epoch(self, epoch: int, mean_loss: float) -> None:
        if self.bar is not None:
            note = f"loss {mean_loss:.4f}"
            self.bar.update(self.task, completed=epoch + 1, epoch=epoch + 1, note=note)
