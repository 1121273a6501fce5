"""PromptCAL's VPT ViT: copies, entangle checkpoints and the block protocol (its forward is
checked against PromptCAL's, written out, in tests/checkpoints/layouts/test_vit.py)."""

from __future__ import annotations

import copy

import torch

from entangle.checkpoints import load_gcd_checkpoint, save_checkpoint
from entangle.models.backbones import freeze_prefix
from entangle.models.vit import VIT_CONFIGS
from entangle.models.vit_vpt import VPTVisionTransformer


def test_copy_and_entangle_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VPTVisionTransformer(VIT_CONFIGS["vit-tiny-test"], num_prompts=3, prompt_layers=3)
    with torch.no_grad():
        model.prompt_tokens.normal_()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    twin = copy.deepcopy(model)
    assert all(b._owner is twin for b in twin.blocks)
    with torch.no_grad():
        twin.prompt_tokens.add_(1.0)  # the copy's blocks read the copy's prompts
        assert not torch.allclose(twin(x), model(x))
    loaded = load_gcd_checkpoint(save_checkpoint(tmp_path / "vpt.pt", model, None))
    torch.testing.assert_close(loaded.backbone(x), model(x), rtol=0, atol=0)
    assert model.num_prefix_tokens == 4
    freeze_prefix(model, 1)
    assert not model.prompt_tokens.requires_grad and model.blocks[-1].attn.qkv.weight.requires_grad
