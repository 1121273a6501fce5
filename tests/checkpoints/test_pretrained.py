"""Pretrained DINO / DINOv2 weights into a built ViT: prefixes removed, pos_embed resampled to
the model's grid, a real mismatch listed."""

from __future__ import annotations

import pytest
import torch

from entangle.checkpoints import CheckpointError
from entangle.checkpoints.pretrained import load_pretrained_vit, load_vit_weights
from entangle.models.vit import VIT_CONFIGS, VisionTransformer, resample_pos_embed


def _vit(img_size: int | None = None, seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    cfg = VIT_CONFIGS["vit-tiny-test"]
    if img_size is not None:
        from dataclasses import replace

        cfg = replace(cfg, img_size=img_size)
    return VisionTransformer(cfg).eval()


def test_a_dino_teacher_file_loads_into_the_model(tmp_path):
    source, model = _vit(seed=1), _vit(seed=2)
    teacher = {f"module.backbone.{k}": v for k, v in source.state_dict().items()}
    torch.save(
        {"teacher": teacher | {"module.head.last_layer.weight": torch.ones(2)}}, tmp_path / "t"
    )
    assert load_pretrained_vit(model, tmp_path / "t") is model
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pos_embed_of_another_grid_is_resampled_to_the_models():
    source = _vit(seed=1)
    model = _vit(img_size=2 * source.config.img_size, seed=2)
    load_vit_weights(model, source.state_dict(), source="w.pth")
    grid = model.config.grid
    want = resample_pos_embed(source.pos_embed.detach(), (grid, grid))
    assert model.pos_embed.shape != source.pos_embed.shape
    assert torch.equal(model.pos_embed.detach(), want)
    assert torch.equal(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_a_missing_key_or_another_width_is_listed():
    model = _vit()
    state = dict(_vit(seed=1).state_dict())
    del state["norm.weight"]
    missing = r"(?s)w\.pth: the ViT backbone.*missing keys \(1\): norm\.weight"
    with pytest.raises(CheckpointError, match=missing):
        load_vit_weights(model, state, source="w.pth")
    wide = dict(_vit(seed=1).state_dict())
    wide["pos_embed"] = torch.zeros(1, wide["pos_embed"].shape[1], 7)  # not resampled
    with pytest.raises(CheckpointError, match="pos_embed"):
        load_vit_weights(model, wide, source="w.pth")
