"""The parts of a SimGCD-style script that entangle does not touch: data, model, options.

Shared by ``simgcd_plain.py`` (the loop without entangle) and ``simgcd_style.py`` (with it),
so that ``diff examples/simgcd_plain.py examples/simgcd_style.py`` is exactly what entangle
changes (docs/simgcd-guide.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from entangle.gcd.losses import (
    cross_entropy_labeled,
    info_nce_loss,
    mean_entropy_gap,
    self_distillation_loss,
    supcon_loss,
)
from entangle.metrics import cluster_accuracy

# ---------------------------------------------------------------- data: tiny generated images


class TinyImages(Dataset):
    """Coloured blob images, one blob position and colour per class, with pixel noise.

    Items are SimGCD's: ``(views, label, uq_idx, mask_lab)`` with two augmented views when
    ``views=2``, or ``(image, label, uq_idx, mask_lab)`` with the plain image when ``views=0``.
    Classes ``0 .. old - 1`` are old; half of their samples are labeled.
    """

    def __init__(self, classes=6, old=3, per_class=24, size=16, views=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(classes).repeat_interleave(per_class)
        centres = torch.rand(classes, 2, generator=g) * (size - 6) + 3
        colours = torch.rand(classes, 3, generator=g)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        c = centres[self.labels]
        blob = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 8)
        self.images = colours[self.labels][:, :, None, None] * blob[:, None]
        self.images += 0.15 * torch.randn(self.images.shape, generator=g)
        first_half = (torch.arange(len(self.labels)) % per_class) < per_class // 2
        self.labeled = (self.labels < old) & first_half
        self.views, self.old, self.classes = views, old, classes

    def __len__(self):
        return len(self.labels)

    def _augment(self, x):
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x + 0.05 * torch.randn_like(x)

    def __getitem__(self, i):
        x = self.images[i]
        item = [self._augment(x) for _ in range(self.views)] if self.views else x
        return item, self.labels[i], i, np.array([int(self.labeled[i])])


# ---------------------------------------------------------------- model


def build_backbone(kind: str, size: int) -> torch.nn.Module:
    """A small ViT: timm's ``VisionTransformer`` or entangle's (same names, torch only)."""
    if kind in ("auto", "timm"):
        try:
            from timm.models.vision_transformer import VisionTransformer

            return VisionTransformer(
                img_size=size, patch_size=8, embed_dim=64, depth=3, num_heads=4, num_classes=0
            )
        except ImportError:
            if kind == "timm":
                raise
    from entangle.models.vit import build_vit

    return build_vit("vit-tiny-test", img_size=size, backend="builtin")


def freeze(backbone: torch.nn.Module, grad_from_block: int) -> None:
    """SimGCD's freezing: only parameters of blocks ``>= grad_from_block`` train."""
    for name, p in backbone.named_parameters():
        p.requires_grad_("block" in name and int(name.split(".")[1]) >= grad_from_block)


def params_groups(*modules):
    """SimGCD's optimiser groups: no weight decay on biases and 1-d parameters."""
    named = [(n, p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not (n.endswith(".bias") or p.ndim == 1)]
    no_decay = [p for n, p in named if n.endswith(".bias") or p.ndim == 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def loaders(args):
    """SimGCD's loaders: a labeled/unlabeled-balanced training loader with two views per item
    and an un-augmented loader over the training set in a fixed order."""
    data = TinyImages(size=args.size, seed=args.seed)
    weights = torch.where(data.labeled, 1.0, data.labeled.sum() / (~data.labeled).sum())
    train_loader = DataLoader(
        data,
        batch_size=args.batch_size,
        sampler=WeightedRandomSampler(weights.double(), len(data)),
        drop_last=True,
    )
    plain = TinyImages(size=args.size, seed=args.seed, views=0)  # the test transform: no views
    return data, plain, train_loader, DataLoader(plain, batch_size=64, shuffle=False)


def simgcd_losses(student_proj, student_out, class_labels, mask_lab, epoch, t_teacher):
    """The SimGCD objective's four terms on both stacked views ``[2b, ...]``.

    Returns:
        ``(cls_loss, cluster_loss, sup_con_loss, contrastive_loss)``; SimGCD's loss is
        ``w * (cls + sup_con) + (1 - w) * (cluster + contrastive)`` with ``w = 0.35``.
    """
    labels2, mask_lab2 = class_labels.repeat(2), mask_lab.repeat(2)
    cls_loss = cross_entropy_labeled(student_out, labels2, mask_lab2, 0.1)
    cluster_loss = self_distillation_loss(student_out, 0.1, t_teacher)
    cluster_loss = cluster_loss + 2.0 * mean_entropy_gap(student_out, 0.1)
    contrastive_loss = info_nce_loss(student_proj, 1.0)
    sup_con_loss = supcon_loss(student_proj, labels2, mask_lab2, 0.07)
    return cls_loss, cluster_loss, sup_con_loss, contrastive_loss


def test(student, loader, old: int) -> tuple[float, float, float]:
    """SimGCD's test(): head argmax on the unlabeled rows, v2 accuracy All / Old / New."""
    student.eval()
    preds, targets, unlabeled = [], [], []
    with torch.no_grad():
        for images, label, _, mask_lab in loader:
            preds.append(student(images.to(next(student.parameters()).device))[1].argmax(1))
            targets.append(label)
            unlabeled.append(mask_lab[:, 0] == 0)
    pred, y, unl = torch.cat(preds).cpu(), torch.cat(targets), torch.cat(unlabeled)
    return cluster_accuracy(y[unl], pred[unl], y[unl] < old)


def parse_args(argv=None, description=""):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="runs/simgcd-style", help="run directory (new)")
    p.add_argument("--backbone", default="auto", choices=["auto", "timm", "builtin"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ref-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--size", type=int, default=16, help="image side (a multiple of 8)")
    p.add_argument("--grad-from-block", type=int, default=2)
    p.add_argument("--probe-every", type=int, default=2)
    p.add_argument("--fp16", action="store_true", help="autocast + GradScaler (CUDA only)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU with a GPU present")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)
