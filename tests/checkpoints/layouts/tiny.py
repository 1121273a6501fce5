"""Sizes and helpers of the layout tests: tiny stand-ins for each codebase's real shapes."""

from __future__ import annotations

import torch

from entangle.models.heads import DINOProjectionHead
from tests.checkpoints.layout_data import DINO_HEAD, shape

DEPTH = 2

TINY = {"D": 64, "N": 16, "p": 8}  # ViT-B/16: D 768, N 196, p 16

TINY_V2 = {"D": 64, "N": 4, "p": 14, "R": 4}  # vitb14_reg4: D 768, N 1369, p 14, R 4

HEAD = {"D": 64, "H": 32, "B": 16, "O": 48}  # GCD: H 2048, B 256, O 65536


def shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


def dino_head_state(out: int, seed: int = 2) -> dict:
    """A DINOHead state dict in the legacy weight-norm spelling the GCD code saves."""
    gen = torch.Generator().manual_seed(seed)
    sizes = HEAD | {"O": out}
    state = {k: torch.randn(shape(r, sizes), generator=gen) for k, r in DINO_HEAD.items()}
    state["last_layer.weight_g"] = torch.ones(out, 1)  # norm_last_layer: fixed at 1
    return state


def direct_projector(state: dict) -> DINOProjectionHead:
    out = state["last_layer.weight_v"].shape[0]
    head = DINOProjectionHead(64, out, bottleneck_dim=16, hidden_dim=32, nlayers=3)
    head.load_state_dict(state)
    return head.eval()


def same_features(loaded, backbone, images):
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone(images), backbone(images), rtol=0, atol=0)
