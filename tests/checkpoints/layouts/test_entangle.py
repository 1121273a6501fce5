"""entangle's own layout round trips: a ViT and the digits MLP with their heads."""

from __future__ import annotations

import numpy as np
import torch

from entangle.checkpoints import (
    load_gcd_checkpoint,
    save_checkpoint,
)
from entangle.models.heads import GCDHead
from tests.checkpoints.models import K, assert_same_model


def test_entangle_round_trip(tmp_path, vit, head, images):
    path = save_checkpoint(tmp_path / "run" / "ckpt.pth", vit, head, {"epoch": np.int64(4)})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temp file left
    loaded = load_gcd_checkpoint(path)
    assert loaded.format == "entangle" and loaded.num_classes == K
    assert loaded.meta["epoch"] == 4 and isinstance(loaded.meta["epoch"], int)
    assert loaded.meta["arch"]["backbone"]["kind"] == "vit"
    assert_same_model(loaded, vit, head, images)
    assert not loaded.backbone.training


def test_entangle_round_trip_of_the_digits_backbone(tmp_path):
    from entangle.models.backbones import ResidualMLP

    backbone = ResidualMLP(in_dim=64, dim=32, depth=3).eval()
    head = GCDHead(32, 10, hidden_dim=16, proj_dim=8).eval()
    loaded = load_gcd_checkpoint(save_checkpoint(tmp_path / "d.pth", backbone, head))
    assert_same_model(loaded, backbone, head, torch.randn(5, 8, 8))
