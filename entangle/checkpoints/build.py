"""Rebuild models from a checkpoint of any registered layout and load them strictly.

:func:`load_gcd_checkpoint` loads a file with :func:`~entangle.checkpoints.safe.safe_load`,
names its layout (:func:`~entangle.checkpoints.registry.detect_format`, or ``format=``), lets
the layout split it into state dicts (:class:`~entangle.checkpoints.registry.Parts`), builds
the models with the builders of :mod:`entangle.gcd` from the tensors' shapes and loads them
strictly. See docs/checkpoints.md for the layouts.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from entangle.checkpoints.keys import str_keyed, strip, sub
from entangle.checkpoints.registry import Parts, SplitContext, detect_format, get_layout
from entangle.checkpoints.safe import CheckpointError, safe_load
from entangle.checkpoints.strict import load_strict
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import (
    DINOProjectionHead,
    GCDHead,
    ReLUMLP,
    infer_dino_projection_config,
    infer_head_config,
    infer_relu_mlp_config,
)
from entangle.models.prompters import PromptedBackbone, sptnet_prompter
from entangle.models.vit import VisionTransformer, ViTConfig, infer_vit_config
from entangle.models.vit_clip import (
    CLIPVisionTransformer,
    infer_clip_vision_config,
    is_clip_visual_state,
)
from entangle.models.vit_vpt import VPTVisionTransformer
from entangle.runs.limits import MODEL_DEPTH, MODEL_PARAMS, VIT_IMAGE_SIZE, VIT_TOKENS, Limit

# ---------------------------------------------------------------------------------- loading


@dataclass
class LoadedCheckpoint:
    """Models rebuilt from a checkpoint, weights loaded strictly, in eval mode on the CPU.

    Attributes:
        format: the layout's name (``entangle analyze --list-formats``; ``"custom"`` with a
            factory).
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
        _check_vit_size(cfg, state, src, "meta.arch.backbone.config")
        try:
            return VisionTransformer(cfg)
        except Exception as exc:  # sizes that do not fit together (width vs heads, say)
            raise CheckpointError(
                f"{src}: meta.arch.backbone.config does not describe a buildable ViT ({exc})"
            ) from None
    try:
        if "stem.weight" in state:
            return _digits_backbone(state, notes, src)
        if is_clip_visual_state(state):
            ccfg = infer_clip_vision_config(state)
            _check_depth(ccfg.layers, src, "the CLIP ViT read off the tensors")
            _check_limit(VIT_IMAGE_SIZE, ccfg.img_size, f"{src}: the CLIP ViT has an input side of")
            tokens = (ccfg.img_size // ccfg.patch_size) ** 2 + 1
            _check_limit(VIT_TOKENS, tokens, f"{src}: the CLIP ViT has a sequence of")
            notes.append(
                f"backbone: CLIP ViT {ccfg.width}-d, {ccfg.layers} blocks, patch "
                f"{ccfg.patch_size}, {ccfg.img_size}px; features ln_post(cls) (use_proj False)"
            )
            return CLIPVisionTransformer(ccfg)
        if "prompt_tokens" in state:
            return _vpt_backbone(state, notes, src)
        cfg = infer_vit_config(state)
        _check_vit_size(cfg, None, src, "the ViT read off the tensors")
    except CheckpointError:
        raise
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


def vit_weight_count(cfg: ViTConfig) -> int:
    """A lower bound on a ViT's parameter count: its weight matrices and position table,
    without biases, norms or tokens (every built :class:`VisionTransformer` has more).

    Per block ``4 D^2`` (qkv and output projection) and ``2 D H`` (the MLP, ``H = D *
    mlp_ratio``); ``(1 + grid^2) D`` positions and ``C p^2 D`` for the patch projection.
    """
    d, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    per_block = 4 * d * d + 2 * d * hidden
    return cfg.depth * per_block + (1 + cfg.grid**2) * d + cfg.in_chans * cfg.patch_size**2 * d


def _check_limit(limit: Limit, amount: int, subject: str) -> None:
    """:meth:`Limit.check` raising :class:`CheckpointError` (the loaders' own family)."""
    try:
        limit.check(amount, subject)
    except EntangleValueError as exc:
        raise CheckpointError(str(exc)) from None


def _check_depth(depth: int, src: str, origin: str) -> None:
    """Refuse a backbone deeper than :data:`~entangle.runs.limits.MODEL_DEPTH` before its
    blocks are built: a depth read off tensor names is 1 + the largest block index, so a
    single ``blocks.99999999.*`` key would ask for 10^8 blocks."""
    _check_limit(MODEL_DEPTH, depth, f"{src}: {origin} has")


def _check_vit_size(cfg: ViTConfig, state: Mapping | None, src: str, origin: str) -> None:
    """Refuse a ViT too large to build, before any module exists (a 65536-block record took
    69 s and 3.2 GB to refuse): depth, input size, sequence length and parameters against the
    limits of
    :mod:`entangle.runs.limits`, and, for a config recorded beside the tensors (``state``),
    parameters against the values the file holds (a strict load needs every one of them from
    the file; a config read off the shapes is left to the strict load's own listing)."""
    _check_depth(cfg.depth, src, origin)
    _check_limit(VIT_IMAGE_SIZE, cfg.img_size, f"{src}: {origin} has an input side of")
    tokens = cfg.grid**2 + 1 + cfg.num_register_tokens
    _check_limit(VIT_TOKENS, tokens, f"{src}: {origin} has a sequence of")
    need = vit_weight_count(cfg)
    _check_limit(MODEL_PARAMS, need, f"{src}: {origin} describes a ViT of at least")
    if state is None:
        return
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    if need > held:
        raise CheckpointError(
            f"{src}: {origin} describes a ViT of at least {need} parameters "
            f"({cfg.depth} blocks, {cfg.embed_dim}-d) but the file's backbone holds {held} "
            "values; the record does not match the tensors (drop meta.arch to rebuild from "
            "the shapes)"
        )


def _vpt_backbone(state: dict, notes: list[str], src: str) -> nn.Module:
    """PromptCAL's VPT ViT: the plain ViT's sizes from the state without the prompt positions."""
    layers, prompts, _ = state["prompt_tokens"].shape
    pos = state["pos_embed"]
    plain = dict(state, pos_embed=torch.cat([pos[:, :1], pos[:, 1 + prompts :]], dim=1))
    cfg = infer_vit_config(plain)
    _check_vit_size(cfg, None, src, "the VPT ViT read off the tensors")
    notes.append(f"backbone: ViT {cfg.embed_dim}-d, {cfg.depth} blocks, with deep prompts")
    return VPTVisionTransformer(cfg, prompts, layers)


def _digits_backbone(state: dict, notes: list[str], src: str) -> nn.Module:
    """entangle's residual-MLP digits backbone, its size read off ``stem`` / ``blocks.*``."""
    # a damaged file names what is wrong in one line; strict loading then checks every key
    stem = state["stem.weight"]
    if not isinstance(stem, torch.Tensor) or stem.ndim != 2:
        shape = tuple(stem.shape) if isinstance(stem, torch.Tensor) else type(stem).__name__
        raise EntangleValueError(f"stem.weight must be a [dim, in_dim] matrix, got {shape}")
    dim, in_dim = stem.shape
    indices = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    odd = sorted(i for i in indices if not i.isdigit())
    if odd:
        raise EntangleValueError(f"blocks.{odd[0]}.* is not a numbered block (blocks.0.*, ...)")
    if not indices:
        raise EntangleValueError("no blocks.* tensors: a residual MLP has at least one block")
    depth = 1 + max(int(i) for i in indices)
    _check_depth(depth, src, "the residual MLP read off the tensors")
    fc1 = state.get("blocks.0.fc1.weight")
    if not isinstance(fc1, torch.Tensor) or fc1.ndim != 2 or dim == 0:
        raise EntangleValueError("blocks.0.fc1.weight must be a [hidden, dim] matrix")
    hidden_ratio = fc1.shape[0] // dim
    notes.append(f"backbone: residual MLP {in_dim}->{dim}-d, {depth} blocks")
    return ResidualMLP(in_dim=in_dim, dim=dim, depth=depth, hidden_ratio=hidden_ratio)


def _build_head(state: dict, kind: str, fmt: str, src: str) -> nn.Module:
    try:
        if kind == "mlp+gcd":
            return nn.Sequential(
                ReLUMLP(**infer_relu_mlp_config(sub(state, "0."))),
                GCDHead(**_gcd_args(infer_head_config(sub(state, "1.")))),
            )
        return GCDHead(**_gcd_args(infer_head_config(state)))
    except EntangleValueError as exc:
        raise CheckpointError(f"{src} ({fmt} layout): cannot read the head: {exc}") from None


def _gcd_args(cfg: dict) -> dict:
    cfg = dict(cfg)
    return {"in_dim": cfg.pop("in_dim"), "num_classes": cfg.pop("num_classes"), **cfg}


def _prompted(backbone: nn.Module, state: dict, src: str, fmt: str) -> nn.Module:
    """``backbone`` behind the image prompter ``state`` describes (SPTNet), loaded strictly."""
    patch = getattr(getattr(backbone, "config", None), "patch_size", None)
    try:
        prompter = sptnet_prompter(state, patch or 16)
    except EntangleValueError as exc:
        raise CheckpointError(f"{src} ({fmt} layout): {exc}") from None
    load_strict(prompter, state, what="prompter", source=src, fmt=fmt)
    return PromptedBackbone(prompter.eval(), backbone)


def _head_in_dim(head: nn.Module) -> int | None:
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    return None if first is None else first.in_features


def load_gcd_checkpoint(
    path: str | Path,
    *,
    trust: bool = False,
    model_factory: str | None = None,
    format: str | None = None,
    head: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a GCD checkpoint of any known layout into freshly built models, strictly.

    The architecture is read from the tensors: ViT width, depth, patch and input size from
    ``pos_embed`` / ``blocks.*``; number of classes and projector depth from the head.

    Args:
        path: the checkpoint file.
        trust: allow code in the pickle (``--trust-checkpoint``).
        model_factory: ``"package.module:function"``, a zero-argument callable returning
            ``(backbone, head)`` (head may be ``None``) to load into instead.
        format: force this layout (a name of ``entangle analyze --list-formats``) instead of
            detecting it.
        head: a separate head file for the layouts that keep it apart (GCD's
            ``model_proj_head.pt``; by default found beside ``path``).

    Raises:
        CheckpointError: unsafe, corrupt, unknown layout, missing/unexpected keys or shape
            mismatches (listed, with the detected format).
    """
    path = Path(path)
    ctx = SplitContext(
        str(path),
        path=path,
        head_path=None if head is None else Path(head),
        load=lambda p: safe_load(p, trust=trust),
    )
    return load_gcd_object(
        safe_load(path, trust=trust),
        source=str(path),
        model_factory=model_factory,
        format=format,
        context=ctx,
    )


def load_gcd_object(
    obj: Any,
    *,
    source: str = "<checkpoint>",
    model_factory: str | None = None,
    format: str | None = None,
    context: SplitContext | None = None,
) -> LoadedCheckpoint:
    """:func:`load_gcd_checkpoint` on an object already loaded (e.g. by :func:`safe_load`)."""
    src = source
    ctx = context or SplitContext(src)
    factory = _import_factory(model_factory) if model_factory else None
    if format is not None:
        layout = get_layout(format)
        fmt = layout.name
        if not isinstance(obj, Mapping) or not layout.recognise(obj):
            keys = sorted(map(str, obj))[:12] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(
                f"{src}: not a {fmt} checkpoint (top-level keys: {keys}); drop --format to "
                "detect the layout, or see entangle analyze --list-formats"
            )
    else:
        try:
            fmt = detect_format(obj)
        except CheckpointError:
            if factory is None or not str_keyed(obj):
                raise
            fmt = "custom"
    if fmt == "custom":
        parts = _split_custom(obj)
    else:
        try:
            parts = get_layout(fmt).split(obj, ctx)
        except (KeyError, TypeError, AttributeError) as exc:  # a forced format that does not fit
            raise CheckpointError(
                f"{src}: not a {fmt} checkpoint ({type(exc).__name__}: {exc}); top-level keys: "
                f"{', '.join(sorted(map(str, obj))[:12])}"
            ) from None
    notes = parts.notes
    arch = parts.arch

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
            backbone = _build_backbone(parts.backbone, arch, notes, fmt, src)
            head = (
                _build_head(parts.head, parts.head_kind, fmt, src)
                if parts.head is not None
                else None
            )
    load = {"source": src, "fmt": fmt, "assign": factory is None}
    load_strict(backbone, parts.backbone, what="backbone", **load)
    if parts.prompter is not None:
        backbone = _prompted(backbone, parts.prompter, src, fmt)
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


def _split_custom(obj: Mapping) -> Parts:
    """A flat state dict for a user factory: ``backbone.*``/``head.*``, ``0.*``/``1.*``, or
    all backbone."""
    sd = obj
    for key in ("state_dict", "model"):
        if str_keyed(obj.get(key)):
            sd = obj[key]
    sd = strip(sd, "module.")
    for bb, hd in (("backbone.", "head."), ("0.", "1.")):
        if all(k.startswith((bb, hd)) for k in sd):
            return Parts(sub(sd, bb), sub(sd, hd) or None, {})
    return Parts(dict(sd), None, {})
