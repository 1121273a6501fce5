"""SPTNet's prompters and the prompted backbone (its values are checked against an
independent computation in tests/checkpoints/layouts/test_sptnet.py)."""

from __future__ import annotations

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.models.backbones import freeze_prefix
from entangle.models.prompters import PatchPrompter, PromptedBackbone, sptnet_prompter
from entangle.models.vit import VIT_CONFIGS, VisionTransformer


def test_masks_are_not_state_and_sizes_are_checked():
    prompter = PatchPrompter(32, 8)
    assert list(prompter.state_dict()) == ["patch"]  # SPTNet computes the mask in forward
    with pytest.raises(EntangleValueError, match="resize the images to 32 px"):
        prompter(torch.zeros(1, 3, 16, 16))
    with pytest.raises(EntangleValueError, match="not a SPTNet prompter"):
        sptnet_prompter({"weight": torch.zeros(1)}, 8)


def test_prompted_backbone_follows_the_block_protocol():
    vit = VisionTransformer(VIT_CONFIGS["vit-tiny-test"])
    model = PromptedBackbone(PatchPrompter(32, 8), vit)
    assert model.blocks is vit.blocks and model.config is vit.config
    freeze_prefix(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("backbone.blocks.2.") for n in trainable)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), vit(model.prompter(x)))
