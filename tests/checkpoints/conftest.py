"""A tiny ViT, its GCD head and a few images, for the checkpoint tests."""

from __future__ import annotations

import pytest
import torch

from entangle.models.heads import GCDHead
from entangle.models.vit import VIT_CONFIGS, VisionTransformer
from tests.checkpoints.models import K


@pytest.fixture
def vit():
    return VisionTransformer(VIT_CONFIGS["vit-tiny-test"]).eval()


@pytest.fixture
def head():
    return GCDHead(64, K, hidden_dim=32, proj_dim=16).eval()


@pytest.fixture
def images():
    return torch.randn(3, 3, 32, 32)
