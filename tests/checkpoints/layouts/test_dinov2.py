"""A DINOv2 training checkpoint with block chunks."""

from __future__ import annotations

import torch

from entangle.checkpoints import (
    load_gcd_checkpoint,
)
from tests.checkpoints.layouts.tiny import (
    HEAD,
    dino_head_state,
    same_features,
)
from tests.checkpoints.models import prefixed


def test_dinov2_training_checkpoint_with_block_chunks(tmp_path, vit_reg4):
    # facebookresearch/dinov2 (fvcore checkpointer): {'model': SSLMetaArch.state_dict(),
    # 'iteration'}: teacher.backbone.* / student.backbone.*; with block_chunks the block keys
    # are blocks.<chunk>.<i>.* (BlockChunk); plus dino_head / ibot_head per branch
    chunked = {}
    for key, value in vit_reg4.state_dict().items():
        if key.startswith("blocks."):
            i = int(key.split(".")[1])
            key = f"blocks.{i}.{key.split('.', 1)[1]}"  # one block per chunk: blocks.i.i.*
        chunked[key] = value
    model = prefixed(chunked, "teacher.backbone.") | prefixed(
        {k: torch.zeros_like(v) for k, v in chunked.items()}, "student.backbone."
    )
    model |= prefixed(dino_head_state(out=HEAD["O"]), "teacher.dino_head.")
    torch.save({"model": model, "iteration": 12500}, tmp_path / "model_0012499.pth")
    loaded = load_gcd_checkpoint(tmp_path / "model_0012499.pth")
    assert loaded.format == "dinov2" and loaded.meta["iteration"] == 12500
    assert any("block chunks" in n for n in loaded.notes)
    same_features(loaded, vit_reg4, torch.randn(2, 3, 28, 28))
