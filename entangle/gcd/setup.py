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

from entangle.checkpoints import load_pretrained_vit, safe_load
from entangle.data.augment import data_augment, default_augment
from entangle.data.datasets import GCDData, eval_inputs, load_source, make_batch
from entangle.errors import EntangleValueError
from entangle.gcd.config import TrainConfig
from entangle.gcd.pretrain import pretrain_backbone
from entangle.gcd.reference import train_reference
from entangle.models.backbones import build_backbone, freeze_prefix
from entangle.models.heads import GCDHead, ReLUMLP, build_head, infer_head_config
from entangle.nn.devices import resolve_device


@dataclass
class Setup:
    """Data and initial weights shared by the runs of one experiment."""

    data: GCDData
    backbone: torch.nn.Module
    head: torch.nn.Module
    device: torch.device
    reference: tuple[torch.nn.Module, torch.nn.Module] | None = None
    # --trust-checkpoint: --pretrained / --reference may run code on load (the user's call,
    # never a setting of the run or of a grid spec, so not in TrainConfig)
    trust_checkpoint: bool = False


def prepare(
    config: TrainConfig,
    *,
    progress: Callable[[str, int, float], None] | None = None,
    trust_checkpoint: bool = False,
):
    """Load data, build and pretrain the backbone (digits), freeze its prefix, build the head.

    Args:
        config: the run settings.
        progress: ``progress(stage, epoch, loss)`` for display.
        trust_checkpoint: load ``config.pretrained`` / ``config.reference`` even when their
            pickle names code (``--trust-checkpoint``; it runs that code).

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
    data.image_size = config.image_size
    _check_model_fits_data(config.model, config.data, data.input_kind)
    torch.manual_seed(config.seed)
    kwargs = {}
    if config.model == "digits-mlp" and data.input_kind == "vector":
        kwargs["in_dim"] = int(data.x.shape[1])
    if config.model.startswith("vit-"):
        kwargs["backend"] = config.vit_backend
    backbone = build_backbone(config.model, **kwargs)
    if config.model.startswith("vit-") and config.pretrained:
        load_pretrained_vit(backbone, config.pretrained, trust=trust_checkpoint)
    backbone = backbone.to(device)
    if config.model == "digits-mlp":
        if config.pretrained:
            _load_into(backbone, config.pretrained, "backbone", trust=trust_checkpoint)
        elif config.pretrain_epochs and data.in_memory:
            # the embedded model starts from self-supervised features, as GCD starts from DINO
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
    head = build_head(head_name, backbone.feature_dim, data.num_classes)
    if config.head_mlp_layers:
        # the EAGC code's projector: Sequential(MLP_Head, DINOHead), keys 0.mlp.* / 1.*;
        # built after the GCD head so that head's random draw is the default run's
        dim = backbone.feature_dim
        head = torch.nn.Sequential(ReLUMLP(dim, dim, nlayers=config.head_mlp_layers), head)
    head = head.to(device)
    return Setup(data, backbone, head, device, trust_checkpoint=trust_checkpoint)


def _state_dict_from(path: str, part: str, trust: bool = False) -> dict:
    """The ``part`` ("backbone" / "head") state dict of a checkpoint, or a plain state dict.

    Loaded safely (weights only); a missing file, another layout or a model of another shape
    becomes one clear EntangleValueError.
    """
    obj = safe_load(path, trust=trust)
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


def _load_into(module: torch.nn.Module, path: str, part: str, trust: bool = False) -> None:
    try:
        module.load_state_dict(_state_dict_from(path, part, trust))
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise EntangleValueError(f"{path}: its {part} does not fit this model: {exc}") from exc


def labeled_loader(data: GCDData, batch_size: int, device, augment, seed: int):
    """A re-iterable list of labeled batches ``(x, y)`` (one view per sample).

    ``augment=None`` (how EAGC fits its conceptor, on un-augmented inputs) gives the stored
    inputs; with ``augment`` the views are drawn once, so every pass replays them (train the
    reference on :class:`LabeledViews` instead, which draws fresh views every pass).
    """
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


def old_class_index(data: GCDData) -> torch.Tensor:
    """``[K]`` int64: class id -> its index among the sorted old classes (-1 for novel ones)."""
    lut = torch.full((data.num_classes,), -1, dtype=torch.int64)
    old = torch.tensor(sorted(data.old_classes), dtype=torch.int64)
    lut[old] = torch.arange(old.numel())
    return lut


class LabeledViews:
    """The labeled samples as the EAGC authors train the reference model on them.

    Every pass (epoch) shuffles the labeled samples and draws two FRESH augmented views of
    each (a pass never replays the previous one's views); pass ``e`` is fixed by ``(seed,
    e)``. Batches are ``(views, labels, index)`` like the authors' labeled-set loader:
    ``views`` a list of two ``[b, ...]`` tensors, ``labels`` ``[b]`` the old-class index
    (``0..n_old-1``, the reference head's outputs), ``index`` ``[b]`` the sample ids.
    """

    def __init__(self, data: GCDData, batch_size: int, augment, *, seed: int = 0, device="cpu"):
        if batch_size < 1:
            raise EntangleValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.augment = data, int(batch_size), augment
        self.seed, self.device = int(seed), torch.device(device)
        self.rows = torch.nonzero(data.labeled).flatten()
        self.old_index = old_class_index(data)
        self.passes = 0

    def __len__(self) -> int:
        return -(-self.rows.numel() // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 7919 + 104729 + self.passes)
        self.passes += 1
        order = self.rows[torch.randperm(self.rows.numel(), generator=g)]
        for start in range(0, order.numel(), self.batch_size):
            batch = make_batch(self.data, order[start : start + self.batch_size], self.augment, g)
            first, second = batch["views"].to(self.device).chunk(2)
            labels = self.old_index[batch["labels"].cpu()].to(self.device)
            yield [first, second], labels, batch["index"].to(self.device)


def reference_head(head: torch.nn.Module, num_old: int, seed: int) -> torch.nn.Module:
    """A fresh head like ``head`` (a :class:`GCDHead`) over the ``num_old`` old classes.

    Of a ``Sequential(ReLUMLP, GCDHead)`` head, its GCD head's shape: the EAGC authors train
    the reference with a bare DINO head (methods/SimGCD.py).
    """
    if isinstance(head, torch.nn.Sequential):
        head = head[-1]
    shape = {k: v for k, v in head.config.items() if k not in ("in_dim", "num_classes")}
    device = next(head.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # its own seed: the live head's draw is left unchanged
        return GCDHead(head.config["in_dim"], num_old, **shape).to(device)


def _loaded_reference_head(path: str, head: torch.nn.Module, trust: bool) -> torch.nn.Module:
    """The reference checkpoint's head, whatever its class count (old only, or all)."""
    state = _state_dict_from(path, "head", trust)
    try:
        ref_head = GCDHead(**infer_head_config(state)).to(next(head.parameters()).device)
    except EntangleValueError as exc:
        raise EntangleValueError(f"{path}: its head is not a GCD head: {exc}") from exc
    _load_into(ref_head, path, "head", trust)
    return ref_head


def ensure_reference(config: TrainConfig, setup: Setup, progress=None):
    """The frozen reference model (loaded from ``config.reference`` or trained on labeled data).

    Trained as the EAGC authors do (see docs/protocol.md): the backbone's trainable part and
    a fresh head over the old classes, CE on two fresh views of the labeled samples every
    epoch (:class:`LabeledViews`), ``config.reference_*`` settings.
    """
    if setup.reference is not None:
        return setup.reference
    backbone, head = setup.backbone, setup.head
    if config.reference:
        ref_b = copy.deepcopy(backbone)
        trust = setup.trust_checkpoint
        _load_into(ref_b, config.reference, "backbone", trust)
        ref_h = _loaded_reference_head(config.reference, head, trust)
        for m in (ref_b, ref_h):
            m.eval().requires_grad_(False)
    else:
        data = setup.data
        views = LabeledViews(
            data,
            config.reference_batch_size,
            data_augment(data),
            seed=config.seed,
            device=setup.device,
        )
        ref_b, ref_h = train_reference(
            backbone,
            reference_head(head, len(data.old_classes), config.seed),
            views,
            epochs=config.reference_epochs,
            lr=config.reference_lr,
            weight_decay=config.reference_weight_decay,
            temperature=config.student_temperature,
            device=setup.device,
            on_epoch=(lambda e, loss: progress("reference", e, loss)) if progress else None,
        )
    setup.reference = (ref_b, ref_h)
    return setup.reference


# which --data each model family takes (input kinds of entangle.data.sources)
IMAGE_SOURCES = "imagefolder:PATH, cifar10:PATH or cifar100:PATH"


def _check_model_fits_data(model: str, data: str, input_kind: str) -> None:
    """Refuse a model that cannot read the data, naming the --data that suits it."""
    if model.startswith("vit-") and input_kind != "image":
        raise EntangleValueError(
            f"--model {model} reads RGB images [n, 3, H, W], but --data {data} gives "
            f"{input_kind} inputs; use --data {IMAGE_SOURCES} with a ViT, or --model "
            "digits-mlp for --data digits / synthetic"
        )
