"""A DINO pretraining checkpoint: the teacher's ViT is loaded."""

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


def test_dino_training_checkpoint_uses_the_teacher(tmp_path, dino_vit):
    # facebookresearch/dino main_dino.py save_dict: student (DDP: module.backbone.*), teacher
    # (backbone.*, head.*), optimizer, epoch (and args, a Namespace: not written here)
    student = prefixed(
        {k: torch.zeros_like(v) for k, v in dino_vit.state_dict().items()}, "module.backbone."
    )
    teacher = prefixed(dino_vit.state_dict(), "backbone.") | prefixed(
        dino_head_state(out=HEAD["O"]), "head."
    )
    torch.save({"student": student, "teacher": teacher, "epoch": 100}, tmp_path / "checkpoint.pth")
    loaded = load_gcd_checkpoint(tmp_path / "checkpoint.pth")
    assert loaded.format == "dino" and loaded.meta["epoch"] == 100
    same_features(loaded, dino_vit, torch.randn(2, 3, 32, 32))
