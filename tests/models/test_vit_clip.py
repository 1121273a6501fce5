"""entangle.models.vit_clip: CLIP's image encoder against its own formula, and config inference."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.models.vit_clip import (
    CLIPVisionConfig,
    CLIPVisionTransformer,
    QuickGELU,
    infer_clip_vision_config,
    is_clip_visual_state,
)

TINY = CLIPVisionConfig(img_size=16, patch_size=8, width=64, layers=2, heads=1, output_dim=32)


def test_quick_gelu_is_x_sigmoid_1702x():
    x = torch.linspace(-4, 4, 9)
    torch.testing.assert_close(QuickGELU()(x), x / (1 + torch.exp(-1.702 * x)))


def test_forward_is_ln_post_of_the_class_token_after_every_block():
    model = CLIPVisionTransformer(TINY).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        h = model.embed(x)
        assert h.shape == (2, 1 + TINY.grid**2, 64)
        for block in model.blocks:
            h = block(h)
        expected = model.ln_post(h[:, 0])
        torch.testing.assert_close(model(x), expected)
    assert model.feature_dim == 64 and len(model.blocks) == 2


def test_use_proj_projects_to_the_output_dim():
    model = CLIPVisionTransformer(replace(TINY, use_proj=True)).eval()
    with torch.no_grad():
        z = model(torch.randn(2, 3, 16, 16))
        h = model.embed(torch.zeros(1, 3, 16, 16))
    assert z.shape == (2, 32) and model.feature_dim == 32 and h.shape[-1] == 64


def test_wrong_image_size_is_refused_with_the_size_expected():
    model = CLIPVisionTransformer(TINY)
    with pytest.raises(EntangleValueError, match=r"\[n, 3, 16, 16\] images, got \(1, 3, 8, 8\)"):
        model(torch.zeros(1, 3, 8, 8))


def test_config_is_inferred_from_a_state_dicts_shapes():
    state = CLIPVisionTransformer(CLIPVisionConfig(
        img_size=32, patch_size=8, width=128, layers=3, heads=2, output_dim=48
    )).state_dict()  # fmt: skip
    assert is_clip_visual_state(state)
    config = infer_clip_vision_config(state)
    assert config == CLIPVisionConfig(
        img_size=32, patch_size=8, width=128, layers=3, heads=2, output_dim=48
    )
    rebuilt = CLIPVisionTransformer(config)
    rebuilt.load_state_dict(state)  # the same key names CLIP's clip/model.py uses
    assert "transformer.resblocks.2.mlp.c_proj.weight" in state
    with pytest.raises(EntangleValueError, match="not a CLIP visual state dict"):
        infer_clip_vision_config({"conv1.weight": torch.zeros(1)})
    assert not is_clip_visual_state({"class_embedding": 0, "positional_embedding": 0})
