"""entangle.data.augment: the digit and feature augmentations, the default per input kind."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from entangle.data.augment import DigitAugment, FeatureNoise, default_augment, gcd_transform
from entangle.errors import EntangleError, EntangleValueError

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.skipif(HAS_TORCHVISION, reason="checks the message shown without torchvision")
def test_transform_without_torchvision_says_what_to_install():
    with pytest.raises(EntangleError, match=r"entangle-gcd\[vit\]"):
        gcd_transform("train")


def test_digit_shift_moves_pixels_by_at_most_one():
    img = torch.zeros(200, 1, 8, 8)
    img[:, 0, 3, 4] = 1.0
    out = DigitAugment(max_shift=1, contrast=0.0, noise=0.0)(img, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(200))  # interior pixel never lost
    pos = torch.nonzero(out[:, 0])[:, 1:]
    offsets = pos - torch.tensor([3, 4])
    assert offsets.abs().max() == 1
    assert len({tuple(o) for o in offsets.tolist()}) == 9  # all 9 shifts occur


def test_digit_contrast_and_noise():
    img = torch.rand(64, 1, 8, 8) * 0.5 + 0.25
    g = torch.Generator().manual_seed(0)
    out = DigitAugment(max_shift=0, contrast=0.3, noise=0.0)(img, g)
    # contrast keeps each image's mean and scales deviations by one factor in [0.7, 1.3]
    torch.testing.assert_close(out.mean(dim=(2, 3)), img.mean(dim=(2, 3)))
    ratio = (out - out.mean(dim=(2, 3), keepdim=True)) / (img - img.mean(dim=(2, 3), keepdim=True))
    assert ratio.min() >= 0.7 - 1e-5 and ratio.max() <= 1.3 + 1e-5
    noisy = DigitAugment(max_shift=0, contrast=0.0, noise=0.05)(img, g)
    assert 0.04 < float((noisy - img).std()) < 0.06
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1


def test_feature_noise():
    x = torch.zeros(1000, 8)
    out = FeatureNoise(0.1)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and abs(float(out.std()) - 0.1) < 0.01


def test_default_augment():
    assert isinstance(default_augment("digits"), DigitAugment)
    assert isinstance(default_augment("vector", std=0.2), FeatureNoise)
    with pytest.raises(EntangleValueError, match="no default augmentation"):
        default_augment("audio")
