"""The optional [vit] path for real: timm's ViT and torchvision transforms (CI: -m extras)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.data.augment import gcd_transform
from entangle.data.datasets import load_source, make_batch
from entangle.models.vit import build_vit

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
    _image_folder(tmp_path)
    data = load_source(f"imagefolder:{tmp_path}", old_classes="cat,dog")
    assert data.class_names == ["cat", "dog", "owl"] and data.num_classes == 3
    augment = gcd_transform("train", image_size=32)
    batch = make_batch(data, torch.arange(6), augment, torch.Generator().manual_seed(0))
    assert batch["views"].shape == (12, 3, 32, 32)
    vit = build_vit("vit-tiny-test")
    assert vit(batch["views"]).shape == (12, vit.feature_dim)


def _image_folder(root, classes=("cat", "dog", "owl"), per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def test_train_config_reaches_the_timm_backend(tmp_path):
    from entangle.gcd.train import TrainConfig, prepare
    from entangle.models.vit_timm import TimmViT

    folder = _image_folder(tmp_path / "images")
    cfg = TrainConfig(
        data=f"imagefolder:{folder}", model="vit-tiny-test", vit_backend="timm", device="cpu"
    )
    setup = prepare(cfg)
    assert isinstance(setup.backbone, TimmViT)
    # SimGCD's setting: only the last block trains
    trainable = {n.split(".")[1] for n, p in setup.backbone.named_parameters() if p.requires_grad}
    assert trainable == {str(len(setup.backbone.blocks) - 1)}
