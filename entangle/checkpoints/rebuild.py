"""The models a checkpoint's tensors describe, built on the ``meta`` device: a ViT (builtin,
CLIP, VPT) or the digits MLP from the file's architecture record or the tensors' shapes, the
GCD head, the SPTNet prompter, each checked against :mod:`entangle.runs.limits` before any block
is built. :func:`entangle.checkpoints.build.load_gcd_object` loads the weights into them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from entangle.checkpoints.keys import sub
from entangle.checkpoints.safe import CheckpointError
from entangle.checkpoints.strict import load_strict
from entangle.errors import EntangleValueError
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import (
    GCDHead,
    ReLUMLP,
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
