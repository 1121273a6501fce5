"""EAGC's and SelEx's files (methods/*.py): backbone, projector, mlp head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from entangle.checkpoints import (
    load_gcd_checkpoint,
)
from entangle.models.heads import DINOProjectionHead, GCDHead, ReLUMLP
from entangle.models.vit import VIT_CONFIGS, VisionTransformer
from tests.checkpoints.models import K, assert_same_model, to_legacy


def eagc_projector(head):
    return nn.Sequential(ReLUMLP(64, 64), head).eval()


@pytest.mark.parametrize("legacy", [True, False])
def test_eagc_round_trip(tmp_path, vit, head, images, legacy):
    projector = eagc_projector(head)
    proj_state = projector.state_dict()
    assert "0.mlp.0.weight" in proj_state and "1.mlp.0.weight" in proj_state
    path = tmp_path / "SimGCD_cub_best_seed0.pth"
    torch.save(
        {
            "epoch": 12,
            "backbone_state_dict": vit.state_dict(),
            "projector_state_dict": to_legacy(proj_state) if legacy else proj_state,
            "best_all_acc": np.float64(0.61),
            "best_old_acc": np.float64(0.7),
            "best_new_acc": np.float64(0.55),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert loaded.format == "eagc" and loaded.num_classes == K
    assert loaded.meta == {
        "epoch": 12,
        "best_all_acc": 0.61,
        "best_old_acc": 0.7,
        "best_new_acc": 0.55,
    }
    assert all(type(v) in (int, float) for v in loaded.meta.values())
    assert_same_model(loaded, vit, projector, images)


def test_eagc_dinov2_register_backbone(tmp_path, images):
    cfg = replace(
        VIT_CONFIGS["vit-tiny-test"], num_register_tokens=4, layer_scale=1e-5, mask_token=True
    )
    backbone = VisionTransformer(cfg).eval()
    with torch.no_grad():
        for block in backbone.blocks:  # learned layer scales, not the init value
            block.ls1.gamma.uniform_(0.5, 1.5)
    projector = eagc_projector(GCDHead(64, K, hidden_dim=32))
    path = tmp_path / "dinov2.pth"
    torch.save(
        {
            "backbone_state_dict": backbone.state_dict(),
            "projector_state_dict": projector.state_dict(),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert loaded.backbone.config.num_register_tokens == 4
    assert_same_model(loaded, backbone, projector, images)


def test_selex_round_trip(tmp_path, vit, images):
    mlp_head = ReLUMLP(64, 64).eval()
    projector = DINOProjectionHead(64, 100, bottleneck_dim=16, hidden_dim=32).eval()
    path = tmp_path / "SelEx_cub_best_seed1.pth"
    torch.save(
        {
            "epoch": 3,
            "backbone_state_dict": vit.state_dict(),
            "projector_state_dict": to_legacy(projector.state_dict()),
            "mlp_head_state_dict": mlp_head.state_dict(),
            "best_all_acc": np.float64(0.5),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert (loaded.format, loaded.head, loaded.num_classes) == ("selex", None, None)
    assert any("k-means" in n for n in loaded.notes)
    assert_same_model(loaded, vit, None, images)
    with torch.no_grad():
        z = vit(images)
        torch.testing.assert_close(loaded.extras["mlp_head"](z), mlp_head(z), rtol=0, atol=0)
        torch.testing.assert_close(loaded.extras["projector"](z), projector(z), rtol=0, atol=0)
