"""What every run of one experiment starts from: data, initial weights, the reference model.

``prepare(config)`` builds the data and the (pretrained, prefix-frozen) backbone and a fresh
head once, so a baseline and an EAGC run made from the same :class:`Setup` start from
identical weights (the reference code compares runs from different starts; see docs/protocol.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from entangle.errors import EntangleValueError
from entangle.gcd.augment import default_augment
from entangle.gcd.backbones import build_backbone, freeze_prefix
from entangle.gcd.config import TrainConfig
from entangle.gcd.data import GCDData, eval_inputs, load_source
from entangle.gcd.heads import build_head
from entangle.reference import train_reference


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Setup:
    """Data and initial weights shared by the runs of one experiment."""

    data: GCDData
    backbone: torch.nn.Module
    head: torch.nn.Module
    device: torch.device
    reference: tuple[torch.nn.Module, torch.nn.Module] | None = None


def prepare(config: TrainConfig, *, progress: Callable[[str, int, float], None] | None = None):
    """Load data, build and pretrain the backbone (digits), freeze its prefix, build the head.

    Args:
        config: the run settings.
        progress: ``progress(stage, epoch, loss)`` for display.

    Returns:
        :class:`Setup` with the weights every run of this experiment starts from.
    """
    device = resolve_device(config.device)
    extra = {"overlap": config.synthetic_overlap} if config.data == "synthetic" else {}
    data = load_source(
        config.data,
        old_classes=config.old_classes,
        labeled_fraction=config.labeled_fraction,
        seed=config.seed,
        **extra,
    )
    torch.manual_seed(config.seed)
    kwargs = {}
    if config.model == "digits-mlp" and data.input_kind == "vector":
        kwargs["in_dim"] = int(data.x.shape[1])
    if config.model.startswith("vit-"):
        kwargs["backend"] = config.vit_backend
        if config.pretrained:
            kwargs["pretrained"] = config.pretrained
    backbone = build_backbone(config.model, **kwargs).to(device)
    if config.model == "digits-mlp":
        if config.pretrained:
            _load_into(backbone, config.pretrained, "backbone")
        elif config.pretrain_epochs and data.in_memory:
            # the embedded model starts from self-supervised features, as GCD starts from DINO
            from entangle.gcd.pretrain import pretrain_backbone

            pretrain_backbone(
                backbone,
                data.x,
                epochs=config.pretrain_epochs,
                batch_size=256,
                lr=3e-3,
                seed=config.seed,
                device=device,
                augment=default_augment(data.input_kind),
                progress=(lambda e, loss: progress("pretrain", e, loss)) if progress else None,
            )
    freeze_prefix(backbone, config.trainable_blocks)
    head_name = "simgcd" if config.model.startswith("vit-") else "tiny"
    head = build_head(head_name, backbone.feature_dim, data.num_classes).to(device)
    return Setup(data, backbone, head, device)


def _state_dict_from(path: str, part: str) -> dict:
    """The ``part`` ("backbone" / "head") state dict of a checkpoint, or a plain state dict.

    Loaded safely (weights only); a missing file, another layout or a model of another shape
    becomes one clear EntangleValueError.
    """
    from entangle.checkpoints import safe_load

    obj = safe_load(path)
    if isinstance(obj, dict) and isinstance(obj.get(part), dict):
        return obj[part]
    if (
        part == "backbone"
        and isinstance(obj, dict)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        return obj
    keys = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj).__name__
    raise EntangleValueError(
        f"{path}: expected an entangle checkpoint with a {part!r} state dict (e.g. "
        f"RUN/checkpoints/model.pt) or a plain backbone state dict; found {keys}"
    )


def _load_into(module: torch.nn.Module, path: str, part: str) -> None:
    try:
        module.load_state_dict(_state_dict_from(path, part))
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise EntangleValueError(f"{path}: its {part} does not fit this model: {exc}") from exc


def labeled_loader(data: GCDData, batch_size: int, device, augment, seed: int):
    """A re-iterable list of augmented labeled batches ``(x, y)`` (one view per sample)."""
    idx = torch.nonzero(data.labeled).flatten()
    g = torch.Generator().manual_seed(seed)
    order = idx[torch.randperm(idx.numel(), generator=g)]
    batches = []
    for start in range(0, order.numel(), batch_size):
        rows = order[start : start + batch_size]
        x = eval_inputs(data, rows)
        if augment is not None and data.in_memory:
            x = augment(x, g)
        batches.append((x.to(device), data.labels[rows].to(device)))
    return batches


def ensure_reference(config: TrainConfig, setup: Setup, progress=None):
    """The frozen reference model (loaded from ``config.reference`` or trained on labeled data)."""
    if setup.reference is not None:
        return setup.reference
    backbone, head = setup.backbone, setup.head
    if config.reference:
        ref_b, ref_h = copy.deepcopy(backbone), copy.deepcopy(head)
        _load_into(ref_b, config.reference, "backbone")
        _load_into(ref_h, config.reference, "head")
        for m in (ref_b, ref_h):
            m.eval().requires_grad_(False)
    else:
        augment = default_augment(setup.data.input_kind) if setup.data.in_memory else None
        loader = labeled_loader(setup.data, config.batch_size, setup.device, augment, config.seed)
        ref_b, ref_h = train_reference(
            backbone,
            head,
            loader,
            epochs=config.reference_epochs,
            lr=config.lr,
            device=setup.device,
            on_epoch=(lambda e, loss: progress("reference", e, loss)) if progress else None,
        )
    setup.reference = (ref_b, ref_h)
    return setup.reference
