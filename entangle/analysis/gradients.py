"""Gradient diagnostics at a checkpoint: the SimGCD objective on a few two-view batches.

The probe measures g_S / g_U on the last block (and on everything trainable: last block +
head), raw and EAGC-corrected, exactly as during training -- but no optimiser steps: the
gradients are cleared after every batch and the weights never change. The trainable set is
SimGCD's (last block + head, via :func:`~entangle.models.backbones.freeze_prefix`); the
``requires_grad`` flags are restored afterwards.

EAGC without a reference model is EEP only, with the conceptor of the checkpoint's own
labeled features; with a reference (``--reference``) the conceptor and the AGA anchor come
from the reference, as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from itertools import islice

import torch

from entangle.analysis.features import input_transform
from entangle.data.augment import default_augment
from entangle.data.datasets import GCDData, eval_inputs, make_batch, train_sampler
from entangle.defaults import AGA_WEIGHT, APERTURE, EEP_WEIGHT
from entangle.eagc import EAGC
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig, gcd_losses
from entangle.models.backbones import freeze_prefix
from entangle.nn.prefix import SharedPrefix
from entangle.probing.params import last_block
from entangle.probing.probe import Probe

Progress = Callable[[str, int, int, str], None]


@contextmanager
def trainable_as_simgcd(backbone: torch.nn.Module, head: torch.nn.Module):
    """Last block + head trainable inside the block; every ``requires_grad`` flag restored."""
    modules = [backbone, head]
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    try:
        freeze_prefix(backbone, 1)
        head.requires_grad_(True)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
            p.grad = None


class ImageTensorAugment:
    """Views of in-memory images ``[b, 3, H, W]``: random horizontal flip and pixel noise.

    For image tensors given directly (no PIL pipeline); every draw comes from ``generator``.
    """

    def __init__(self, noise: float = 0.05):
        self.noise = float(noise)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
        flip = flip.to(x.device)[:, None, None, None]
        out = torch.where(flip, x.flip(-1), x)
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        return out + self.noise * noise.to(x.device, x.dtype)


def view_augment(backbone: torch.nn.Module, data: GCDData):
    """The recipe's two-view augmentation for ``data`` (image pipelines at the ViT's size)."""
    if data.input_kind == "image":
        if data.in_memory:
            return ImageTensorAugment()
        size = getattr(getattr(backbone, "config", None), "img_size", 224)
        return default_augment("image", image_size=size)
    return default_augment(data.input_kind)


def _labeled_batches(data: GCDData, batch_size: int, backbone) -> list[torch.Tensor]:
    rows = torch.nonzero(data.labeled).flatten()
    transform = input_transform(backbone, data)
    return [
        eval_inputs(data, rows[i : i + batch_size], transform)
        for i in range(0, rows.numel(), batch_size)
    ]


def build_eagc(
    backbone: torch.nn.Module,
    data: GCDData,
    *,
    reference: torch.nn.Module | None,
    batch_size: int,
    device: torch.device,
    labeled_features: torch.Tensor | None = None,
    aperture: float = APERTURE,
    eep_weight: float = EEP_WEIGHT,
    aga_weight: float = AGA_WEIGHT,
) -> EAGC:
    """EAGC fitted on the labeled samples: reference conceptor + AGA, or own conceptor + EEP.

    Without a reference, ``labeled_features`` ``[N, D]`` (the checkpoint's own labeled
    features, already embedded) are used instead of a second forward over the labeled set.
    """
    settings = {"aperture": aperture, "device": device, "eep_weight": eep_weight}
    settings |= {"aga_weight": aga_weight, "aga": reference is not None, "eep": True}
    if reference is None and labeled_features is not None:
        # EAGC.fit over an identity "model": the same conceptor and mu, no re-embedding
        return EAGC.fit(torch.nn.Identity(), [labeled_features], **settings)
    model = reference if reference is not None else backbone
    return EAGC.fit(model, _labeled_batches(data, batch_size, backbone), **settings)


def teacher_epoch(loss: LossConfig, epoch: float | None) -> float:
    """The epoch the teacher temperature is read at: the checkpoint's, else after warm-up."""
    return float(loss.warmup_teacher_epochs if epoch is None else epoch)


def gradient_diagnostics(
    backbone: torch.nn.Module,
    head: torch.nn.Module,
    data: GCDData,
    run,
    *,
    batches: int = 4,
    batch_size: int = 64,
    device: torch.device,
    reference: torch.nn.Module | None = None,
    labeled_features: torch.Tensor | None = None,
    eagc: bool = True,
    epoch: float | None = None,
    aperture: float = APERTURE,
    eep_weight: float = EEP_WEIGHT,
    aga_weight: float = AGA_WEIGHT,
    loss: LossConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """Probe ``batches`` two-view batches of the SimGCD objective at the checkpoint.

    Args:
        backbone, head: the checkpoint's models (on ``device``); left with their weights,
            modes and ``requires_grad`` flags as they were.
        data: the data (labels and masks on the CPU).
        run: a :class:`~entangle.runs.directory.RunWriter` the step records are appended to.
        batches: how many batches to probe (fewer if the data has fewer).
        batch_size: samples per batch (two views each).
        reference: a reference backbone (same architecture): its conceptor and AGA anchor.
        labeled_features: ``[N, D]`` the checkpoint's features of the labeled samples, for
            the EEP-only conceptor without a reference (computed here when None).
        eagc: also measure the EAGC-corrected gradients.
        epoch: the checkpoint's epoch, for the teacher temperature; None = after warm-up.
        aperture, eep_weight, aga_weight: EAGC settings.
        loss: the objective's settings (default SimGCD's); use the ones the checkpoint was
            trained with, or the gradients are those of another objective.

    Returns:
        the step records (one per batch), as written to ``steps.jsonl``.
    """
    _check_inputs(backbone, reference, batches, batch_size)
    if reference is not None:
        reference.eval().requires_grad_(False)
    config = loss or LossConfig()
    epoch = teacher_epoch(config, epoch)
    coordinator = None
    if eagc:
        coordinator = build_eagc(
            backbone,
            data,
            reference=reference,
            batch_size=batch_size,
            device=device,
            labeled_features=labeled_features,
            aperture=aperture,
            eep_weight=eep_weight,
            aga_weight=aga_weight,
        )
    sampler = train_sampler(data, batch_size, seed=seed)  # SimGCD's for benchmarks
    augment = view_augment(backbone, data)
    generator = torch.Generator().manual_seed(seed * 7919 + 1)
    with _eval_mode(backbone, head), trainable_as_simgcd(backbone, head):
        params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
        groups = {"last_block": last_block(backbone), "all": params}
        # free energy over the head's softmax logits (SimGCD: cosine / 0.1)
        probe = Probe(
            groups, run=run, eagc=coordinator, logit_temperature=config.student_temperature
        )
        shared = _shared_prefix(backbone, reference) if reference is not None else None

        def step(batch) -> dict:  # one batch's probed backward: its step record
            return _probe_batch(
                probe, backbone, head, batch, device, coordinator, reference, shared, epoch, config
            )

        total = min(batches, len(sampler))
        # made one at a time, only as many as are probed (each draws from ``generator``)
        made = (make_batch(data, rows, augment, generator) for rows in islice(sampler, total))
        return _probe_each(step, made, total, params, progress)


def _probe_each(step, batches, total: int, params, progress: Progress | None) -> list[dict]:
    """``step`` on each of the ``total`` ``batches``, clearing the gradients after each."""
    records = []
    for i, batch in enumerate(batches):
        records.append(step(batch))
        for p in params:  # nothing accumulates and nothing steps
            p.grad = None
        if progress is not None:
            progress("gradients", i + 1, total, "")
    return records


@contextmanager
def _eval_mode(backbone: torch.nn.Module, head: torch.nn.Module):
    """Both models in eval mode for the block, then back in the modes they had.

    A deterministic forward: the recipe's models have no dropout or batch norm to keep.
    """
    was = backbone.training, head.training
    backbone.eval()
    head.eval()
    try:
        yield
    finally:
        backbone.train(was[0])
        head.train(was[1])


def _check_inputs(backbone, reference, batches: int, batch_size: int) -> None:
    if batches < 1 or batch_size < 2:
        raise EntangleValueError(
            f"gradient diagnostics need batches >= 1 and batch_size >= 2, got {batches} and "
            f"{batch_size}"
        )
    if reference is not None:
        ref_dim = getattr(reference, "feature_dim", None)
        if ref_dim != getattr(backbone, "feature_dim", None):
            raise EntangleValueError(
                f"the reference backbone gives {ref_dim}-d features but the checkpoint "
                f"{getattr(backbone, 'feature_dim', None)}-d; pass a reference of the same model"
            )


def _shared_prefix(backbone, reference):
    try:
        return SharedPrefix(backbone, reference)
    except EntangleValueError:
        return None  # prefixes differ: the reference runs its own forward


def _probe_batch(
    probe, backbone, head, batch, device, coordinator, reference, shared, epoch, config
) -> dict:
    views = batch["views"].to(device)
    labeled = batch["labeled"].to(device)
    labeled2 = labeled.repeat(2)
    z_ref = None
    if shared is not None:
        z, z_ref = shared(views)
    else:
        z = backbone(views)
        if reference is not None:
            with torch.no_grad():
                z_ref = reference(views)
    if coordinator is not None:
        z = coordinator.coordinate(z, labeled2, z_ref)
    proj, logits = head(z)
    sup, unsup, _ = gcd_losses(
        proj, logits, batch["labels"].to(device), labeled, epoch=epoch, config=config
    )
    return probe.backward(
        sup,
        unsup,
        features=z,
        labeled=labeled2,
        novel=batch["novel"].to(device).repeat(2),
        logits=logits,
    )
