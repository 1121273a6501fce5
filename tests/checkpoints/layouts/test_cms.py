"""CMS's raw DataParallel file and its best-model file."""

from __future__ import annotations

import numpy as np
import torch

from entangle.checkpoints import (
    load_gcd_checkpoint,
)
from tests.checkpoints.layouts.tiny import (
    dino_head_state,
    direct_projector,
    same_features,
)
from tests.checkpoints.models import prefixed


def test_cms_raw_and_best_files(tmp_path, dino_vit):
    # methods/contrastive_meanshift_training.py: torch.save(model.state_dict()) of
    # nn.DataParallel(DINO(args)): module.backbone.* and module.img_projection_head.*
    # (out_dim = feat_dim); the best epoch as {'k': estimated_k, 'model_state_dict': ...}
    head_state = dino_head_state(out=64, seed=5)
    raw = prefixed(dino_vit.state_dict(), "module.backbone.") | prefixed(
        head_state, "module.img_projection_head."
    )
    torch.save(raw, tmp_path / "model.pt")
    torch.save({"k": np.int64(37), "model_state_dict": raw}, tmp_path / "model_best.pt")
    images = torch.randn(2, 3, 32, 32)
    for name in ("model.pt", "model_best.pt"):
        loaded = load_gcd_checkpoint(tmp_path / name)
        assert loaded.format == "cms" and loaded.head is None
        same_features(loaded, dino_vit, images)
        with torch.no_grad():
            z = dino_vit(images)
            want = direct_projector(head_state)(z)
            torch.testing.assert_close(loaded.extras["projector"](z), want, rtol=0, atol=0)
    assert loaded.meta["k"] == 37 and isinstance(loaded.meta["k"], int)
