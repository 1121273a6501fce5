"""Self-supervised pretraining of a small backbone, the way GCD starts from a DINO ViT.

SimCLR-style: two augmented views of every image in a batch, a small projection MLP on top
of the backbone features, and the InfoNCE loss of ``entangle.gcd.losses`` (the other view is
the positive, every other row a negative). The projection MLP is discarded afterwards; only
the backbone keeps what it learned. No labels are used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from entangle.errors import EntangleValueError
from entangle.gcd.losses import info_nce_loss


def _projection(dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out_dim))


def _check_settings(epochs: int, batch_size: int, lr: float, n: int) -> None:
    if epochs < 0 or batch_size < 2 or not lr > 0:
        raise EntangleValueError(
            f"pretrain_backbone: need epochs >= 0, batch_size >= 2 and lr > 0, got {epochs}, "
            f"{batch_size}, {lr}"
        )
    if n < 2:
        raise EntangleValueError(f"pretrain_backbone: need at least 2 samples, got {n}")


def pretrain_backbone(
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device,
    augment,
    temperature: float = 0.2,
    weight_decay: float = 1e-4,
    proj_dim: int = 64,
    progress: Callable[[int, float], object] | None = None,
) -> list[float]:
    """Train ``backbone`` in place with SimCLR's contrastive loss on unlabeled images.

    Every trainable parameter of the backbone is updated (call ``freeze_prefix`` afterwards,
    not before). AdamW with a cosine learning-rate schedule; the last partial batch of an
    epoch is dropped so every step sees ``batch_size`` samples.

    Args:
        backbone: a module following the block protocol (``feature_dim``, ``forward -> [n, D]``).
        images: ``[n, ...]`` in-memory samples (e.g. ``GCDData.x`` of digits).
        epochs: passes over ``images``.
        batch_size: samples per step (each gives two views).
        lr: peak learning rate.
        seed: fixes the projection head's initialisation, the shuffling and the views; on CPU
            the result is bit-identical for a seed.
        device: where to train (``"cpu"``, ``"cuda"``, a ``torch.device``).
        augment: batched augmentation ``augment(x, generator) -> x'`` (``DigitAugment``).
        temperature: InfoNCE temperature.
        weight_decay: AdamW weight decay.
        proj_dim: width of the discarded projection output.
        progress: called as ``progress(epoch, mean_loss)`` after each epoch (0-based epoch).

    Returns:
        the mean loss of each epoch, ``[epochs]`` floats.
    """
    n = images.shape[0]
    _check_settings(epochs, batch_size, lr, n)
    batch_size = min(batch_size, n)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = _projection(backbone.feature_dim, proj_dim)
    backbone.to(device)
    head.to(device)
    data = images.to(device)
    params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = n // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * steps_per_epoch))
    was_training = backbone.training
    backbone.train()
    losses = []
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            total = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                x = data[order[step * batch_size : (step + 1) * batch_size].to(device)]
                views = torch.cat([augment(x, generator), augment(x, generator)])
                loss = info_nce_loss(head(backbone(views)), temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach()
            # one host sync per epoch
            losses.append(float(total) / steps_per_epoch)
            if progress is not None:
                progress(epoch, losses[-1])
    finally:
        backbone.train(was_training)
    return losses
