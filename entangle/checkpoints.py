"""Checkpoint format detection and model rebuilding, plus the public checkpoint API.

:func:`load_gcd_checkpoint` loads a file with :func:`safe_load`, names its layout with
:func:`detect_format`, rebuilds the models from the tensors' shapes and loads them strictly.
Safe loading, strict loading and the writer live in :mod:`entangle.checkpoint_io`; they are
re-exported here, so ``from entangle.checkpoints import safe_load`` keeps working.

Layouts recognised by :func:`detect_format` (``module.`` prefixes from DDP are stripped):

- ``entangle``: ``{"entangle_checkpoint": 1, "backbone": sd, "head": sd | None, "meta": {}}``
  written by :func:`save_checkpoint`;
- ``simgcd``: ``{"model": sd}`` where ``sd`` is ``Sequential(ViT, DINOHead)``: ``0.*`` / ``1.*``;
- ``eagc``: the EAGC code's best checkpoint: ``backbone_state_dict`` and
  ``projector_state_dict`` = ``Sequential(MLP_Head, DINOHead)`` (``0.mlp.*``, ``1.*``),
  ``epoch`` and ``best_{all,old,new}_acc`` (numpy float64);
- ``selex``: the EAGC code's SelEx checkpoint: ``backbone_state_dict``,
  ``mlp_head_state_dict`` (``MLP_Head``) and ``projector_state_dict`` (DINO's projection
  head, 65536 prototypes); SelEx clusters with k-means and has no class head;
- ``vit``: a plain ViT state dict (DINO / DINOv2 weights, reference models), optionally
  inside ``teacher`` / ``model`` / ``state_dict`` with ``backbone.`` prefixes.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from entangle.checkpoint_io import (
    ENTANGLE_CHECKPOINT_VERSION,
    CheckpointError,
    load_strict,
    safe_load,
    save_checkpoint,
)
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.gcd.heads import (
    DINOProjectionHead,
    GCDHead,
    ReLUMLP,
    infer_dino_projection_config,
    infer_head_config,
    infer_relu_mlp_config,
)
from entangle.gcd.vit import VisionTransformer, ViTConfig, backbone_state_from, infer_vit_config

__all__ = [
    "ENTANGLE_CHECKPOINT_VERSION",
    "FORMATS",
    "CheckpointError",
    "LoadedCheckpoint",
    "detect_format",
    "load_gcd_checkpoint",
    "load_gcd_object",
    "load_strict",
    "safe_load",
    "save_checkpoint",
]

FORMATS = ("entangle", "simgcd", "eagc", "selex", "vit")


# ------------------------------------------------------------------------ state-dict keys


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key that has it (a DDP ``module.``, say)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state.items()}


def _sub(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under ``prefix``, with it removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------ format detection


def _str_keyed(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj)


def detect_format(obj: Any) -> str:
    """Name the layout of a loaded checkpoint object: one of :data:`FORMATS`.

    Raises:
        CheckpointError: unknown layout (the message lists the top-level keys).
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"expected a checkpoint dict, got {type(obj).__name__}; a pickled whole model is "
            "not supported -- save its state_dict()"
        )
    if "entangle_checkpoint" in obj:
        version = obj["entangle_checkpoint"]
        if version != ENTANGLE_CHECKPOINT_VERSION:
            raise CheckpointError(
                f"entangle checkpoint version {version!r} is not supported (this entangle reads "
                f"version {ENTANGLE_CHECKPOINT_VERSION}); upgrade entangle"
            )
        return "entangle"
    if "backbone_state_dict" in obj:
        return "selex" if "mlp_head_state_dict" in obj else "eagc"
    inner = obj.get("model") if _str_keyed(obj.get("model")) else obj
    keys = _strip(inner, "module.") if _str_keyed(inner) else {}
    if "0.cls_token" in keys and any(k.startswith("1.") for k in keys):
        return "simgcd"
    if _str_keyed(obj) and "cls_token" in backbone_state_from(obj):
        return "vit"
    shown = ", ".join(sorted(map(str, obj))[:12])
    raise CheckpointError(
        f"unrecognised checkpoint layout (top-level keys: {shown}); entangle reads "
        f"{', '.join(FORMATS)} layouts. For anything else pass --model package.module:factory"
    )


# ---------------------------------------------------------------------------------- loading


@dataclass
class LoadedCheckpoint:
    """Models rebuilt from a checkpoint, weights loaded strictly, in eval mode on the CPU.

    Attributes:
        format: the detected layout (:data:`FORMATS`, or ``"custom"`` with a factory).
        backbone: images ``[n, 3, H, W]`` to features ``z [n, D]``.
        head: features to ``(proj, logits [n, K])``; ``None`` when the file has no class head.
        meta: the file's metadata (epoch, best accuracies as floats, entangle meta).
        num_classes: ``K`` read off the head's classifier, or ``None``.
        notes: what the loader assumed or changed, for the report.
        extras: other heads in the file (SelEx: ``mlp_head``, ``projector``).
    """

    format: str
    backbone: nn.Module
    head: nn.Module | None
    meta: dict
    num_classes: int | None
    notes: list[str] = field(default_factory=list)
    extras: dict[str, nn.Module] = field(default_factory=dict)


@dataclass
class _Parts:
    backbone: dict
    head: dict | None
    meta: dict
    extras: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _plain_meta(obj: Mapping, keys: tuple[str, ...]) -> dict:
    meta = {}
    for key in keys:
        value = obj.get(key)
        if isinstance(value, np.generic) or (
            isinstance(value, torch.Tensor) and value.numel() == 1
        ):
            value = value.item()  # numpy float64 accuracies become plain floats
        if isinstance(value, (int, float, str)):
            meta[key] = value
    return meta


def _split(obj: Mapping, fmt: str) -> _Parts:
    """Backbone / head / extra state dicts of a checkpoint in layout ``fmt``."""
    notes = []

    def unwrap(sd: Any, name: str) -> dict:
        if not _str_keyed(sd):
            raise CheckpointError(f"{fmt} checkpoint: {name} is not a state dict")
        if any(k.startswith("module.") for k in sd):
            notes.append(f"{name}: stripped the 'module.' prefix (distributed training)")
        return _strip(sd, "module.")

    acc_keys = ("epoch", "best_all_acc", "best_old_acc", "best_new_acc")
    if fmt == "entangle":
        head = obj.get("head")
        meta = dict(obj.get("meta") or {})
        return _Parts(
            unwrap(obj.get("backbone"), "backbone"),
            None if head is None else unwrap(head, "head"),
            meta,
            notes=notes,
        )
    if fmt == "simgcd":
        sd = unwrap(obj["model"] if "model" in obj else obj, "model")
        other = sorted({k.split(".")[0] for k in sd} - {"0", "1"})
        if other:
            raise CheckpointError(
                f"simgcd checkpoint has entries outside 0.* (ViT) and 1.* (DINOHead): {other}"
            )
        return _Parts(_sub(sd, "0."), _sub(sd, "1."), _plain_meta(obj, ("epoch",)), notes=notes)
    if fmt in ("eagc", "selex"):
        parts = _Parts(
            unwrap(obj["backbone_state_dict"], "backbone_state_dict"),
            None,
            _plain_meta(obj, acc_keys),
            notes=notes,
        )
        proj = obj.get("projector_state_dict")
        if fmt == "eagc":
            if proj is None:
                notes.append("no projector_state_dict: the file has no class head")
            else:
                parts.head = unwrap(proj, "projector_state_dict")
        else:
            parts.extras["mlp_head"] = unwrap(obj["mlp_head_state_dict"], "mlp_head_state_dict")
            if proj is not None:
                parts.extras["projector"] = unwrap(proj, "projector_state_dict")
            notes.append(
                "SelEx has no class head: cluster with k-means (SelEx clusters "
                "normalize(mlp_head(backbone(x))))"
            )
        return parts
    return _Parts(backbone_state_from(obj), None, {}, notes=notes)  # "vit"


def _import_factory(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EntangleValueError(
            f"model factory must look like 'package.module:function', got {spec!r}"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EntangleValueError(f"cannot import model factory {spec!r}: {exc}") from exc
    if not callable(fn):
        raise EntangleTypeError(f"model factory {spec!r} is not callable")
    return fn


ARCH_KINDS = ("vit",)  # the closed set of builders a checkpoint's meta["arch"] may name


def _vit_config(data: Any, src: str) -> ViTConfig:
    """A :class:`ViTConfig` from a file's ``arch.backbone.config``: known fields, right types
    and sizes only -- the file is data, never a recipe for calling code."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{src}: meta.arch.backbone.config is not a mapping")
    fields = {f.name: f for f in dataclasses.fields(ViTConfig)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise CheckpointError(f"{src}: meta.arch.backbone.config has unknown fields {unknown}")
    clean = {}
    for name, value in data.items():
        default = getattr(ViTConfig, name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            low = 0 if name == "num_register_tokens" else 1
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= 1 << 16
        else:  # float fields; layer_scale may be None
            ok = (value is None and name == "layer_scale") or (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value >= 0
            )
        if not ok:
            raise CheckpointError(
                f"{src}: meta.arch.backbone.config.{name} = {value!r} is not a valid "
                f"{type(default).__name__} for a ViT"
            )
        clean[name] = value
    return ViTConfig(**clean)


def _build_backbone(state: dict, arch: Any, notes: list[str], fmt: str, src: str):
    """The backbone module for ``state``: from the file's architecture record when it names a
    builder of :data:`ARCH_KINDS`, else from the tensors' shapes. Nothing named in the file
    is imported or called."""
    if arch:
        kind = arch.get("kind") if isinstance(arch, Mapping) else None
        if kind not in ARCH_KINDS:
            shown = kind if kind is not None else sorted(map(str, arch))[:6]
            raise CheckpointError(
                f"{src}: meta.arch.backbone names an architecture entangle does not build "
                f"({shown!r}; known: {', '.join(ARCH_KINDS)}); if you trust the model's code, "
                "pass --model package.module:factory"
            )
        cfg = _vit_config(arch.get("config"), src)
        try:
            return VisionTransformer(cfg)
        except Exception as exc:  # sizes that do not fit together (width vs heads, say)
            raise CheckpointError(
                f"{src}: meta.arch.backbone.config does not describe a buildable ViT ({exc})"
            ) from None
    try:
        if "stem.weight" in state:
            return _digits_backbone(state, notes)
        cfg = infer_vit_config(state)
    except (EntangleValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"{src} ({fmt} layout): cannot rebuild the backbone from the file: {exc}. "
            "Pass --model package.module:factory"
        ) from None
    notes.append(
        f"backbone: ViT {cfg.embed_dim}-d, {cfg.depth} blocks, patch {cfg.patch_size}, "
        f"{cfg.img_size}px, {cfg.num_register_tokens} registers; {cfg.num_heads} heads assumed "
        "from the width (shapes do not record it)"
    )
    return VisionTransformer(cfg)


def _digits_backbone(state: dict, notes: list[str]) -> nn.Module:
    """entangle's residual-MLP digits backbone, its size read off ``stem`` / ``blocks.*``."""
    from entangle.gcd.backbones import ResidualMLP

    dim, in_dim = state["stem.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden_ratio = state["blocks.0.fc1.weight"].shape[0] // dim
    notes.append(f"backbone: residual MLP {in_dim}->{dim}-d, {depth} blocks")
    return ResidualMLP(in_dim=in_dim, dim=dim, depth=depth, hidden_ratio=hidden_ratio)


def _build_head(state: dict, fmt: str, src: str) -> nn.Module:
    try:
        if fmt == "eagc" and any(k.startswith("0.") for k in state):
            return nn.Sequential(
                ReLUMLP(**infer_relu_mlp_config(_sub(state, "0."))),
                GCDHead(**_gcd_args(infer_head_config(_sub(state, "1.")))),
            )
        return GCDHead(**_gcd_args(infer_head_config(state)))
    except EntangleValueError as exc:
        raise CheckpointError(f"{src} ({fmt} layout): cannot read the head: {exc}") from None


def _gcd_args(cfg: dict) -> dict:
    cfg = dict(cfg)
    return {"in_dim": cfg.pop("in_dim"), "num_classes": cfg.pop("num_classes"), **cfg}


def _head_in_dim(head: nn.Module) -> int | None:
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    return None if first is None else first.in_features


def load_gcd_checkpoint(
    path: str | Path, *, trust: bool = False, model_factory: str | None = None
) -> LoadedCheckpoint:
    """Load a GCD checkpoint of any known layout into freshly built models, strictly.

    The architecture is read from the tensors: ViT width, depth, patch and input size from
    ``pos_embed`` / ``blocks.*``; number of classes and projector depth from the head.

    Args:
        path: the checkpoint file.
        trust: allow code in the pickle (``--trust-checkpoint``).
        model_factory: ``"package.module:function"``, a zero-argument callable returning
            ``(backbone, head)`` (head may be ``None``) to load into instead.

    Raises:
        CheckpointError: unsafe, corrupt, unknown layout, missing/unexpected keys or shape
            mismatches (listed, with the detected format).
    """
    return load_gcd_object(
        safe_load(path, trust=trust), source=str(path), model_factory=model_factory
    )


def load_gcd_object(
    obj: Any, *, source: str = "<checkpoint>", model_factory: str | None = None
) -> LoadedCheckpoint:
    """:func:`load_gcd_checkpoint` on an object already loaded (e.g. by :func:`safe_load`)."""
    src = source
    factory = _import_factory(model_factory) if model_factory else None
    try:
        fmt = detect_format(obj)
    except CheckpointError:
        if factory is None or not _str_keyed(obj):
            raise
        fmt = "custom"
    parts = _split_custom(obj) if fmt == "custom" else _split(obj, fmt)
    notes = parts.notes
    arch = parts.meta.get("arch") if fmt == "entangle" else None
    arch = arch if isinstance(arch, Mapping) else {}

    if factory is not None:
        built = factory()
        if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)):
            raise EntangleTypeError(
                f"model factory {model_factory!r} must return (backbone, head) modules, got "
                f"{type(built).__name__}"
            )
        backbone, head = built
        notes.append(f"models built by {model_factory}")
    else:
        # built without memory or random init; the strict load below adopts the file's tensors
        with torch.device("meta"):
            backbone = _build_backbone(parts.backbone, arch.get("backbone"), notes, fmt, src)
            head = _build_head(parts.head, fmt, src) if parts.head is not None else None
    load = {"source": src, "fmt": fmt, "assign": factory is None}
    load_strict(backbone, parts.backbone, what="backbone", **load)
    if head is not None and parts.head is None:
        notes.append("the file has no head weights: the factory's head keeps its own")
    elif parts.head is not None:
        if head is None:
            notes.append("head weights in the file ignored: the factory returned no head")
        else:
            load_strict(head, parts.head, what="head", **load)
    dim = getattr(backbone, "feature_dim", None)
    if head is not None and dim is not None and _head_in_dim(head) not in (None, dim):
        raise CheckpointError(
            f"{src}: the head expects {_head_in_dim(head)}-d features but the backbone gives "
            f"{dim}-d; backbone and head come from different models"
        )

    extras: dict[str, nn.Module] = {}
    with torch.device("meta"):
        if "mlp_head" in parts.extras:
            extras["mlp_head"] = ReLUMLP(**infer_relu_mlp_config(parts.extras["mlp_head"]))
        if "projector" in parts.extras:
            pcfg = infer_dino_projection_config(parts.extras["projector"])
            extras["projector"] = DINOProjectionHead(
                pcfg.pop("in_dim"), pcfg.pop("out_dim"), **pcfg
            )
    for name, module in extras.items():
        load_strict(module, parts.extras[name], what=name, source=src, fmt=fmt, assign=True)
    for module in (backbone, head, *extras.values()):
        if module is not None:
            _check_materialised(module, src)
    num_classes = None
    if head is not None:
        last = next((m for m in head.modules() if isinstance(m, GCDHead)), None)
        num_classes = last.num_classes if last is not None else getattr(head, "num_classes", None)
    return LoadedCheckpoint(fmt, backbone, head, parts.meta, num_classes, notes, extras)


def _check_materialised(module: nn.Module, src: str) -> None:
    """Put ``module`` in eval mode; refuse one left with ``meta`` tensors the file did not fill."""
    empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise CheckpointError(f"{src}: the file leaves {empty[:5]} of the rebuilt model unset")
    module.eval()


def _split_custom(obj: Mapping) -> _Parts:
    """A flat state dict for a user factory: ``backbone.*``/``head.*``, ``0.*``/``1.*``, or
    all backbone."""
    sd = obj
    for key in ("state_dict", "model"):
        if _str_keyed(obj.get(key)):
            sd = obj[key]
    sd = _strip(sd, "module.")
    for bb, hd in (("backbone.", "head."), ("0.", "1.")):
        if all(k.startswith((bb, hd)) for k in sd):
            return _Parts(_sub(sd, bb), _sub(sd, hd) or None, {})
    return _Parts(dict(sd), None, {})
