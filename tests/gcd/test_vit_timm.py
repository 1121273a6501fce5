"""The optional [vit] path for real: timm's ViT and torchvision transforms (CI: -m extras)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.gcd.augment import gcd_transform
from entangle.gcd.data import load_source, make_batch
from entangle.gcd.vit import build_vit

pytestmark = pytest.mark.extras


@pytest.mark.parametrize("name", ["vit-tiny-test", "vit-s16"])
def test_timm_and_builtin_vit_agree_on_the_same_weights(name):
    torch.manual_seed(0)
    builtin = build_vit(name, backend="builtin").eval()
    timm_vit = build_vit(name, backend="timm").eval()
    # DINO key names: the built-in state dict loads strictly into timm's model
    timm_vit.load_state_dict(builtin.state_dict(), strict=True)
    size = builtin.config.img_size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(timm_vit(x), builtin(x), rtol=1e-4, atol=1e-5)
        # the frozen-prefix split means the same in both
        h_b, h_t = builtin.embed(x), timm_vit.embed(x)
        torch.testing.assert_close(h_t, h_b, rtol=1e-5, atol=1e-6)


def test_imagefolder_batches_feed_a_vit(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "owl"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    data = load_source(f"imagefolder:{tmp_path}", old_classes="cat,dog")
    assert data.class_names == ["cat", "dog", "owl"] and data.num_classes == 3
    augment = gcd_transform("train", image_size=32)
    batch = make_batch(data, torch.arange(6), augment, torch.Generator().manual_seed(0))
    assert batch["views"].shape == (12, 3, 32, 32)
    vit = build_vit("vit-tiny-test")
    assert vit(batch["views"]).shape == (12, vit.feature_dim)
