"""The plain ViT layout: GCD / SelEx / InfoSieve / PromptCAL backbone files with their
projection head, DINOv2 registers, VPT prompts, a forced format, DINO's released teacher."""

from __future__ import annotations

import pytest
import torch

from entangle.checkpoints import (
    CheckpointError,
    load_gcd_checkpoint,
)
from tests.checkpoints.layout_data import shape, vit_keys
from tests.checkpoints.layouts.tiny import (
    DEPTH,
    HEAD,
    TINY,
    dino_head_state,
    direct_projector,
    same_features,
    shapes,
)
from tests.checkpoints.models import assert_same_model, prefixed


@pytest.mark.parametrize(
    ("model_file", "head_file"),
    [
        ("model.pt", "model_proj_head.pt"),
        ("model_best.pt", "model_proj_head_best.pt"),
        ("model_best_lab.pt", "model_proj_head_best_lab.pt"),  # PromptCAL's _best_<postfix>
    ],
)
def test_gcd_backbone_file_finds_its_projection_head(tmp_path, dino_vit, model_file, head_file):
    # methods/contrastive_training/contrastive_training.py (GCD, SelEx, InfoSieve) saves
    # model.state_dict() and projection_head.state_dict() as two files side by side
    torch.save(dino_vit.state_dict(), tmp_path / model_file)
    head_state = dino_head_state(out=HEAD["O"])
    torch.save(head_state, tmp_path / head_file)
    loaded = load_gcd_checkpoint(tmp_path / model_file)
    assert loaded.format == "vit" and loaded.head is None
    assert loaded.meta["head_file"] == str(tmp_path / head_file)
    images = torch.randn(3, 3, 32, 32)
    same_features(loaded, dino_vit, images)
    with torch.no_grad():
        z = dino_vit(images)
        torch.testing.assert_close(
            loaded.extras["projector"](z), direct_projector(head_state)(z), rtol=0, atol=0
        )
    assert any("k-means" in n for n in loaded.notes)


def test_head_file_given_explicitly_and_missing_head_noted(tmp_path, dino_vit):
    torch.save(dino_vit.state_dict(), tmp_path / "backbone.pt")
    torch.save(dino_head_state(out=HEAD["O"]), tmp_path / "elsewhere.pt")
    alone = load_gcd_checkpoint(tmp_path / "backbone.pt")
    assert "projector" not in alone.extras and any("--head" in n for n in alone.notes)
    loaded = load_gcd_checkpoint(tmp_path / "backbone.pt", head=tmp_path / "elsewhere.pt")
    assert "projector" in loaded.extras


def test_selex_dinov2_vitb14_reg4_backbone(tmp_path, vit_reg4):
    torch.save(vit_reg4.state_dict(), tmp_path / "model_best.pt")
    loaded = load_gcd_checkpoint(tmp_path / "model_best.pt")
    assert loaded.format == "vit" and loaded.backbone.config.num_register_tokens == 4
    same_features(loaded, vit_reg4, torch.randn(2, 3, 28, 28))


def test_promptcal_vpt_backbone_with_deep_prompts(tmp_path, dino_vit):
    # PromptCAL models/vpt_vision_transformer.py: prompt_tokens [depth, P, D] and a pos_embed
    # with 1 + P + N positions (the P prompt positions zeroed by mask_vpt_pos_embed); after
    # block i < depth - 1 the prompt slots take prompt_tokens[i + 1]
    p = 5
    gen = torch.Generator().manual_seed(8)
    state = dict(dino_vit.state_dict())
    prompts = torch.randn(DEPTH, p, 64, generator=gen)
    pos = state["pos_embed"]
    state["prompt_tokens"] = prompts
    state["pos_embed"] = torch.cat([pos[:, :1], torch.zeros(1, p, 64), pos[:, 1:]], dim=1)
    want_keys = {k: shape(r, TINY) for k, r in vit_keys(DEPTH).items()}
    want_keys |= {"prompt_tokens": (DEPTH, p, 64), "pos_embed": (1, 1 + p + 16, 64)}
    assert shapes(state) == want_keys
    torch.save(state, tmp_path / "model.pt")
    loaded = load_gcd_checkpoint(tmp_path / "model.pt")
    assert loaded.format == "vit" and any("PromptCAL VPT" in n for n in loaded.notes)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # PromptCAL's forward, written out over the plain ViT's blocks
        x = dino_vit.patch_embed(images)
        x = torch.cat([dino_vit.cls_token.expand(2, -1, -1), prompts[0].expand(2, -1, -1), x], 1)
        x = x + state["pos_embed"]
        for i, block in enumerate(dino_vit.blocks):
            x = block(x)
            if i < DEPTH - 1:
                x = torch.cat([x[:, :1], prompts[i + 1].expand(2, -1, -1), x[:, 1 + p :]], 1)
        want = dino_vit.norm(x)[:, 0]
        torch.testing.assert_close(loaded.backbone(images), want, rtol=1e-6, atol=1e-6)


def test_format_forces_a_layout_and_a_wrong_one_is_a_clear_error(tmp_path, dino_vit):
    teacher = prefixed(dino_vit.state_dict(), "backbone.")
    torch.save({"teacher": teacher}, tmp_path / "t.pth")
    forced = load_gcd_checkpoint(tmp_path / "t.pth", format="vit")
    assert forced.format == "vit"
    same_features(forced, dino_vit, torch.randn(1, 3, 32, 32))
    with pytest.raises(CheckpointError, match="not a eagc checkpoint"):
        load_gcd_checkpoint(tmp_path / "t.pth", format="eagc")
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'nope'"):
        load_gcd_checkpoint(tmp_path / "t.pth", format="nope")


def test_plain_vit_and_dino_teacher_round_trip(tmp_path, vit, images):
    torch.save(vit.state_dict(), tmp_path / "reference.pth")
    loaded = load_gcd_checkpoint(tmp_path / "reference.pth")
    assert (loaded.format, loaded.head, loaded.num_classes) == ("vit", None, None)
    assert_same_model(loaded, vit, None, images)
    teacher = prefixed(vit.state_dict(), "backbone.")
    teacher["head.last_layer.weight_v"] = torch.randn(8, 4)
    torch.save({"teacher": teacher}, tmp_path / "teacher.pth")
    assert_same_model(load_gcd_checkpoint(tmp_path / "teacher.pth"), vit, None, images)
