"""Pretrained ViT weights (DINO / DINOv2 files) into a backbone built by ``entangle.gcd``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from entangle.checkpoints.keys import backbone_state_from
from entangle.checkpoints.safe import safe_load
from entangle.checkpoints.strict import load_strict
from entangle.models.vit import resample_pos_embed


def load_vit_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str):
    """Load ``state`` into ``model`` strictly, resampling ``pos_embed`` to the model's grid.

    Raises:
        CheckpointError: listing missing / unexpected keys and shape mismatches.
    """
    state = dict(state)
    pos = state.get("pos_embed")
    target = model.pos_embed.shape
    # only a different grid is resampled; a different width is a real mismatch, reported below
    if (
        isinstance(pos, torch.Tensor)
        and pos.ndim == 3
        and pos.shape != target
        and pos.shape[-1] == target[-1]
    ):
        grid = model.config.grid
        state["pos_embed"] = resample_pos_embed(pos, (grid, grid))
    load_strict(model, state, what="ViT backbone", source=source)


def load_pretrained_vit(model: nn.Module, path: str | Path, *, trust: bool = False) -> nn.Module:
    """Load a local DINO / DINOv2 weights file into ``model`` (built by ``build_vit``).

    Loaded with ``weights_only=True`` (``trust=True``: ``--trust-checkpoint``, which DINO's
    full training checkpoints need for their ``argparse.Namespace``) and strictly: prefixes
    ``module.`` / ``backbone.`` stripped, a ``head.*`` dropped, ``pos_embed`` resampled to
    the model's grid.

    Returns:
        ``model``.
    """
    state = backbone_state_from(safe_load(path, trust=trust))
    load_vit_weights(model, state, source=str(path))
    return model
