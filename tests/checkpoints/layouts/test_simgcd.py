"""SimGCD's {'model': Sequential(ViT, head)} file: legacy and DDP spellings, full ViT-B/16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from entangle.checkpoints import (
    load_gcd_checkpoint,
    load_gcd_object,
)
from entangle.models.heads import GCDHead
from entangle.models.vit import build_vit
from tests.checkpoints.models import K, assert_same_model, prefixed, to_legacy


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("ddp", [False, True])
def test_simgcd_round_trip(tmp_path, vit, head, images, legacy, ddp):
    state = nn.Sequential(vit, head).state_dict()
    state = to_legacy(state) if legacy else state
    state = prefixed(state, "module.") if ddp else state
    optimizer = torch.optim.SGD(nn.Sequential(vit, head).parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": 7}, path)
    loaded = load_gcd_checkpoint(path)
    # SimGCD's train.py saves 'epoch': epoch + 1 (epochs finished), so the last epoch trained
    # (the teacher temperature analyze reads) is index 6
    assert (loaded.format, loaded.num_classes) == ("simgcd", K)
    assert loaded.meta == {"epoch": 6, "epochs_done": 7}
    assert any("module." in n for n in loaded.notes) == ddp
    assert_same_model(loaded, vit, head, images)


def test_full_vit_b16_simgcd_layout_round_trip():
    """The real ViT-B/16 + 100-class head layout, in memory (a 350 MB file is not needed)."""
    with torch.device("meta"):
        backbone, head = build_vit("vit-b16"), GCDHead(768, 100)
    gen = torch.Generator().manual_seed(0)
    original = nn.Sequential(backbone, head)
    state = {k: torch.rand(v.shape, generator=gen) - 0.5 for k, v in original.state_dict().items()}
    original.load_state_dict(state, assign=True)
    loaded = load_gcd_object({"model": prefixed(to_legacy(state), "module."), "epoch": 200})
    cfg = loaded.backbone.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.img_size) == (
        768,
        12,
        12,
        16,
        224,
    )
    assert loaded.num_classes == 100
    assert_same_model(loaded, backbone.eval(), head.eval(), torch.randn(1, 3, 32, 32))
