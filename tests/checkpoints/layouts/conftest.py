"""Tiny ViTs with exactly the key names of DINO's ViT-B/16 and DINOv2's vitb14_reg4."""

from __future__ import annotations

import pytest
import torch

from entangle.models.vit import VisionTransformer, ViTConfig
from tests.checkpoints.layout_data import DINOV2_BLOCK, DINOV2_TOP, shape, vit_keys
from tests.checkpoints.layouts.tiny import DEPTH, TINY, TINY_V2, shapes


@pytest.fixture
def dino_vit():
    torch.manual_seed(0)
    model = VisionTransformer(
        ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=DEPTH, num_heads=4)
    )
    want = {k: shape(r, TINY) for k, r in vit_keys(DEPTH).items()}
    assert shapes(model.state_dict()) == want  # the DINO key names, exactly
    return model.eval()


@pytest.fixture
def vit_reg4():
    torch.manual_seed(1)
    cfg = ViTConfig(
        img_size=28,
        patch_size=14,
        embed_dim=64,
        depth=DEPTH,
        num_heads=4,
        num_register_tokens=4,
        layer_scale=1e-5,
        mask_token=True,
    )
    model = VisionTransformer(cfg)
    with torch.no_grad():  # layer scale and registers away from their init, so they matter
        for name, p in model.named_parameters():
            if "gamma" in name or "register" in name:
                p.normal_()
    want = {k: shape(r, TINY_V2) for k, r in vit_keys(DEPTH, DINOV2_TOP, DINOV2_BLOCK).items()}
    assert shapes(model.state_dict()) == want
    return model.eval()
