"""The frozen reference model EAGC anchors to: trained on labeled data only, like the paper."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch

from entangle.errors import EntangleValueError


def train_reference(
    backbone: torch.nn.Module,
    head: torch.nn.Module,
    labeled_loader: Iterable,
    *,
    epochs: int = 30,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-5,
    temperature: float = 0.1,
    device: torch.device | str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Train copies of the trainable part of ``backbone`` + ``head`` on labeled data (CE).

    Which parameters train is decided by the inputs' ``requires_grad`` flags (SimGCD: the last
    block and the head), so the reference shares the frozen prefix bit for bit with the live
    model and :class:`~entangle.prefix.SharedPrefix` can fork after it.

    Args:
        backbone: ``x -> [n, D]``; copied, not modified.
        head: ``z -> (proj, logits)`` or ``z -> logits``; copied, not modified.
        labeled_loader: iterable of ``(x, y)`` batches of labeled samples, old classes only.
        epochs, lr, momentum, weight_decay: SGD with a cosine schedule.
        temperature: logits are divided by it before the cross-entropy (SimGCD uses 0.1).
        device: defaults to the backbone's device.
        on_epoch: called with ``(epoch, mean_loss)`` after every epoch (progress display).

    Returns:
        ``(reference_backbone, reference_head)``, frozen and in eval mode.
    """
    ref_backbone, ref_head = copy.deepcopy(backbone), copy.deepcopy(head)
    if device is None:
        device = next(backbone.parameters()).device
    ref_backbone.to(device).train()
    ref_head.to(device).train()
    params = [p for m in (ref_backbone, ref_head) for p in m.parameters() if p.requires_grad]
    if not params:
        raise EntangleValueError("train_reference: nothing to train (all parameters frozen)")
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    for epoch in range(epochs):
        total, batches = 0.0, 0
        for x, y in labeled_loader:
            out = ref_head(ref_backbone(x.to(device)))
            logits = out[1] if isinstance(out, tuple) else out
            loss = torch.nn.functional.cross_entropy(logits / temperature, y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            batches += 1
        sched.step()
        if batches == 0:
            raise EntangleValueError("train_reference: the labeled loader yielded no batches")
        if on_epoch is not None:
            on_epoch(epoch, float(total) / batches)
    for m in (ref_backbone, ref_head):
        m.eval()
        m.requires_grad_(False)
    return ref_backbone, ref_head
