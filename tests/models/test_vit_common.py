"""entangle.models.vit_common: the config, the named configs, the resampler and the protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.vit_common import (
    VIT_CONFIGS,
    ViTConfig,
    backbone_features,
    resample_pos_embed,
)


def test_config_grid_and_dict_round_trip():
    config = VIT_CONFIGS["vit-b14-dinov2"]
    assert config.grid == 37 and ViTConfig().grid == 14
    assert ViTConfig(**config.to_dict()) == config
    assert VIT_CONFIGS["vit-tiny-test"].embed_dim % VIT_CONFIGS["vit-tiny-test"].num_heads == 0
    for name, c in VIT_CONFIGS.items():
        assert c.img_size % c.patch_size == 0 and c.embed_dim % c.num_heads == 0, name


def test_resample_same_grid_is_identity_and_keeps_cls():
    pos = torch.randn(1, 1 + 16, 8)
    assert resample_pos_embed(pos, (4, 4)) is pos
    out = resample_pos_embed(pos, (6, 5))
    assert out.shape == (1, 1 + 30, 8)
    torch.testing.assert_close(out[:, 0], pos[:, 0], rtol=0, atol=0)


def test_resample_reproduces_a_linear_field_inside_the_grid():
    # bicubic (Keys) interpolation is exact on linear functions away from the border
    old, new = 6, 12
    rows = torch.arange(old, dtype=torch.float64).repeat_interleave(old)
    cols = torch.arange(old, dtype=torch.float64).repeat(old)
    field = torch.stack([2 * rows + 1, -cols], dim=-1).float()
    pos = torch.cat([torch.zeros(1, 2), field])[None]
    out = resample_pos_embed(pos, (new, new))[0, 1:].reshape(new, new, 2)
    centre = (torch.arange(new) + 0.5) * old / new - 0.5  # source coordinate of each new cell
    inner = slice(3, new - 3)
    r, c = torch.meshgrid(centre[inner], centre[inner], indexing="ij")
    torch.testing.assert_close(out[inner, inner, 0], (2 * r + 1).float(), rtol=0, atol=1e-4)
    torch.testing.assert_close(out[inner, inner, 1], (-c).float(), rtol=0, atol=1e-4)


def test_resample_refuses_a_grid_that_is_not_square():
    with pytest.raises(EntangleValueError, match="15 patch positions, not a square grid"):
        resample_pos_embed(torch.zeros(1, 16, 4), (4, 4), num_prefix_tokens=1)
    prefixed = torch.randn(1, 5 + 9, 2)  # registers: 5 prefix positions
    out = resample_pos_embed(prefixed, (2, 2), num_prefix_tokens=5)
    assert out.shape == (1, 9, 2) and torch.equal(out[:, :5], prefixed[:, :5])
    assert resample_pos_embed(prefixed.half(), (4, 4), num_prefix_tokens=5).dtype == torch.half


def test_backbone_features_runs_embed_every_block_then_pool():
    calls = []

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Identity(), nn.Identity()])

        def embed(self, x):
            calls.append("embed")
            return x + 1

        def pool(self, h):
            calls.append("pool")
            return h.sum(1)

    backbone = Backbone()
    for i, block in enumerate(backbone.blocks):
        block.register_forward_hook(lambda m, a, out, i=i: calls.append(f"block{i}"))
    out = backbone_features(backbone, torch.zeros(2, 3, 4))
    assert calls == ["embed", "block0", "block1", "pool"]
    assert out.shape == (2, 4) and torch.equal(out, torch.full((2, 4), 3.0))
