"""State-dict key handling shared by the layouts: prefixes, sub-dicts, plain metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from entangle.checkpoints.safe import CheckpointError


def strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key that has it (a DDP ``module.``, say)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state.items()}


def sub(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under ``prefix``, with it removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


def str_keyed(obj: Any) -> bool:
    """A non-empty mapping with string keys (what a state dict looks like)."""
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj)


def unwrap(sd: Any, name: str, fmt: str, notes: list[str]) -> dict:
    """A state dict without DDP's ``module.`` prefix (noted when stripped)."""
    if not str_keyed(sd):
        raise CheckpointError(f"{fmt} checkpoint: {name} is not a state dict")
    if any(k.startswith("module.") for k in sd):
        notes.append(f"{name}: stripped the 'module.' prefix (distributed training)")
    return strip(sd, "module.")


def plain_meta(obj: Mapping, keys: tuple[str, ...]) -> dict:
    """The named entries that are numbers or strings; numpy / one-element tensors unwrapped."""
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


def is_vit_state(state: Mapping) -> bool:
    """Has the keys every DINO / DINOv2 ViT state dict has."""
    return all(k in state for k in ("cls_token", "pos_embed", "patch_embed.proj.weight"))


def backbone_state_from(obj) -> dict[str, torch.Tensor]:
    """The ViT state dict inside a DINO / DINOv2 weights object, with prefixes removed.

    Accepts a plain state dict or a training checkpoint holding one under ``teacher``,
    ``model`` or ``state_dict``; strips ``module.`` and ``backbone.`` prefixes, drops the
    pretraining ``head.*`` (DINO's projection head) and renames timm's ``reg_token`` to
    DINOv2's ``register_tokens``.
    """
    if isinstance(obj, Mapping):
        for key in ("teacher", "model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and not isinstance(obj.get("pos_embed"), torch.Tensor):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key.startswith("head.") or key == "head":
            continue
        out["register_tokens" if key == "reg_token" else key] = value
    return out
