"""SPTNet: the prompter acts on the images as SPTNet's own code would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.checkpoints import (
    load_gcd_checkpoint,
)
from entangle.models.heads import GCDHead
from tests.checkpoints.layout_data import shape
from tests.checkpoints.layouts.tiny import (
    DEPTH,
)
from tests.checkpoints.models import prefixed


def sptnet_reference_prompt(prompter: dict, size: int, patch: int, pad: int | None) -> torch.Tensor:
    """SPTNet's additive prompt computed here independently, with numpy masks."""
    frame = np.ones((patch, patch))
    frame[1:-1, 1:-1] = 0  # PatchPrompter: prompt_size 1, a 1 px frame in every patch
    mask = torch.from_numpy(np.tile(frame, (size // patch, size // patch))).float()
    prompt = prompter["0.patch" if pad is None else "0.1.patch"] * mask
    if pad is None:
        return prompt
    border = torch.zeros(1, 3, size, size)
    border[..., :pad, :] = prompter["0.0.pad_up"]
    border[..., size - pad :, :] = prompter["0.0.pad_down"]
    border[..., pad : size - pad, :pad] = prompter["0.0.pad_left"]
    border[..., pad : size - pad, size - pad :] = prompter["0.0.pad_right"]
    return border, prompt  # pad prompter first, then the patch prompter


@pytest.mark.parametrize("prompt_type", ["patch", "all"])
def test_sptnet_prompter_acts_on_the_images(tmp_path, dino_vit, prompt_type):
    from tests.checkpoints.layout_data import SPTNET_ALL_PROMPTER, SPTNET_PATCH_PROMPTER

    sizes = {"S": 32, "pad": 6}
    rules = SPTNET_PATCH_PROMPTER if prompt_type == "patch" else SPTNET_ALL_PROMPTER
    gen = torch.Generator().manual_seed(3)
    prompter = {k: torch.randn(shape(r, sizes), generator=gen) for k, r in rules.items()}
    torch.manual_seed(4)
    head = GCDHead(64, 6, hidden_dim=32, proj_dim=16).eval()
    state = prompter | prefixed(dino_vit.state_dict(), "1.0.") | prefixed(head.state_dict(), "1.1.")
    torch.save(state, tmp_path / "dinoB16_best_trainul.pt")
    loaded = load_gcd_checkpoint(tmp_path / "dinoB16_best_trainul.pt")
    assert loaded.format == "sptnet" and loaded.num_classes == 6
    images = torch.randn(2, 3, 32, 32)
    if prompt_type == "patch":
        prompted = images + sptnet_reference_prompt(prompter, 32, 8, None)
    else:
        border, patch = sptnet_reference_prompt(prompter, 32, 8, 6)
        prompted = images + border + patch
    with torch.no_grad():
        want = dino_vit(prompted)
        torch.testing.assert_close(loaded.backbone(images), want, rtol=1e-6, atol=1e-6)
        for got, ref in zip(loaded.head(want), head(want), strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert len(loaded.backbone.blocks) == DEPTH  # the probed blocks are the ViT's
