"""Every layout from a synthetic checkpoint written in exactly that codebase's layout.

Key names, nesting and shape rules come from tests/checkpoints/layout_data.py (each naming
its public file); the built-in models are checked to have exactly those keys, the file is
written in the codebase's nesting, loaded strictly, and the rebuilt model must give the same
features as the model built directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from entangle.checkpoints import CheckpointError, detect_format, load_gcd_checkpoint
from entangle.models.heads import DINOProjectionHead
from entangle.models.vit import VisionTransformer, ViTConfig
from tests.checkpoints.layout_data import (
    DINO_HEAD,
    DINOV2_BLOCK,
    DINOV2_TOP,
    shape,
    vit_keys,
)

DEPTH = 2
TINY = {"D": 64, "N": 16, "p": 8}  # ViT-B/16: D 768, N 196, p 16
TINY_V2 = {"D": 64, "N": 4, "p": 14, "R": 4}  # vitb14_reg4: D 768, N 1369, p 14, R 4
HEAD = {"D": 64, "H": 32, "B": 16, "O": 48}  # GCD: H 2048, B 256, O 65536


def shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture
def vit():
    torch.manual_seed(0)
    model = VisionTransformer(
        ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=DEPTH, num_heads=4)
    )
    want = {k: shape(r, TINY) for k, r in vit_keys(DEPTH).items()}
    assert shapes(model.state_dict()) == want  # the DINO key names, exactly
    return model.eval()


@pytest.fixture
def vit_reg4():
    torch.manual_seed(1)
    cfg = ViTConfig(
        img_size=28,
        patch_size=14,
        embed_dim=64,
        depth=DEPTH,
        num_heads=4,
        num_register_tokens=4,
        layer_scale=1e-5,
        mask_token=True,
    )
    model = VisionTransformer(cfg)
    with torch.no_grad():  # layer scale and registers away from their init, so they matter
        for name, p in model.named_parameters():
            if "gamma" in name or "register" in name:
                p.normal_()
    want = {k: shape(r, TINY_V2) for k, r in vit_keys(DEPTH, DINOV2_TOP, DINOV2_BLOCK).items()}
    assert shapes(model.state_dict()) == want
    return model.eval()


def dino_head_state(out: int, seed: int = 2) -> dict:
    """A DINOHead state dict in the legacy weight-norm spelling the GCD code saves."""
    gen = torch.Generator().manual_seed(seed)
    sizes = HEAD | {"O": out}
    state = {k: torch.randn(shape(r, sizes), generator=gen) for k, r in DINO_HEAD.items()}
    state["last_layer.weight_g"] = torch.ones(out, 1)  # norm_last_layer: fixed at 1
    return state


def direct_projector(state: dict) -> DINOProjectionHead:
    out = state["last_layer.weight_v"].shape[0]
    head = DINOProjectionHead(64, out, bottleneck_dim=16, hidden_dim=32, nlayers=3)
    head.load_state_dict(state)
    return head.eval()


def same_features(loaded, backbone, images):
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone(images), backbone(images), rtol=0, atol=0)


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


# ------------------------------------------------------------- GCD, SelEx, InfoSieve, PromptCAL


@pytest.mark.parametrize(
    ("model_file", "head_file"),
    [
        ("model.pt", "model_proj_head.pt"),
        ("model_best.pt", "model_proj_head_best.pt"),
        ("model_best_lab.pt", "model_proj_head_best_lab.pt"),  # PromptCAL's _best_<postfix>
    ],
)
def test_gcd_backbone_file_finds_its_projection_head(tmp_path, vit, model_file, head_file):
    # methods/contrastive_training/contrastive_training.py (GCD, SelEx, InfoSieve) saves
    # model.state_dict() and projection_head.state_dict() as two files side by side
    torch.save(vit.state_dict(), tmp_path / model_file)
    head_state = dino_head_state(out=HEAD["O"])
    torch.save(head_state, tmp_path / head_file)
    loaded = load_gcd_checkpoint(tmp_path / model_file)
    assert loaded.format == "vit" and loaded.head is None
    assert loaded.meta["head_file"] == str(tmp_path / head_file)
    images = torch.randn(3, 3, 32, 32)
    same_features(loaded, vit, images)
    with torch.no_grad():
        z = vit(images)
        torch.testing.assert_close(
            loaded.extras["projector"](z), direct_projector(head_state)(z), rtol=0, atol=0
        )
    assert any("k-means" in n for n in loaded.notes)


def test_head_file_given_explicitly_and_missing_head_noted(tmp_path, vit):
    torch.save(vit.state_dict(), tmp_path / "backbone.pt")
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


def test_promptcal_vpt_backbone_with_deep_prompts(tmp_path, vit):
    # PromptCAL models/vpt_vision_transformer.py: prompt_tokens [depth, P, D] and a pos_embed
    # with 1 + P + N positions (the P prompt positions zeroed by mask_vpt_pos_embed); after
    # block i < depth - 1 the prompt slots take prompt_tokens[i + 1]
    p = 5
    gen = torch.Generator().manual_seed(8)
    state = dict(vit.state_dict())
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
        x = vit.patch_embed(images)
        x = torch.cat([vit.cls_token.expand(2, -1, -1), prompts[0].expand(2, -1, -1), x], 1)
        x = x + state["pos_embed"]
        for i, block in enumerate(vit.blocks):
            x = block(x)
            if i < DEPTH - 1:
                x = torch.cat([x[:, :1], prompts[i + 1].expand(2, -1, -1), x[:, 1 + p :]], 1)
        want = vit.norm(x)[:, 0]
        torch.testing.assert_close(loaded.backbone(images), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------- CMS


def test_cms_raw_and_best_files(tmp_path, vit):
    # methods/contrastive_meanshift_training.py: torch.save(model.state_dict()) of
    # nn.DataParallel(DINO(args)): module.backbone.* and module.img_projection_head.*
    # (out_dim = feat_dim); the best epoch as {'k': estimated_k, 'model_state_dict': ...}
    head_state = dino_head_state(out=64, seed=5)
    raw = prefixed(vit.state_dict(), "module.backbone.") | prefixed(
        head_state, "module.img_projection_head."
    )
    torch.save(raw, tmp_path / "model.pt")
    torch.save({"k": np.int64(37), "model_state_dict": raw}, tmp_path / "model_best.pt")
    images = torch.randn(2, 3, 32, 32)
    for name in ("model.pt", "model_best.pt"):
        loaded = load_gcd_checkpoint(tmp_path / name)
        assert loaded.format == "cms" and loaded.head is None
        same_features(loaded, vit, images)
        with torch.no_grad():
            z = vit(images)
            want = direct_projector(head_state)(z)
            torch.testing.assert_close(loaded.extras["projector"](z), want, rtol=0, atol=0)
    assert loaded.meta["k"] == 37 and isinstance(loaded.meta["k"], int)


# ------------------------------------------------------------------------- DINO and DINOv2


def test_dino_training_checkpoint_uses_the_teacher(tmp_path, vit):
    # facebookresearch/dino main_dino.py save_dict: student (DDP: module.backbone.*), teacher
    # (backbone.*, head.*), optimizer, epoch (and args, a Namespace: not written here)
    student = prefixed(
        {k: torch.zeros_like(v) for k, v in vit.state_dict().items()}, "module.backbone."
    )
    teacher = prefixed(vit.state_dict(), "backbone.") | prefixed(
        dino_head_state(out=HEAD["O"]), "head."
    )
    torch.save({"student": student, "teacher": teacher, "epoch": 100}, tmp_path / "checkpoint.pth")
    loaded = load_gcd_checkpoint(tmp_path / "checkpoint.pth")
    assert loaded.format == "dino" and loaded.meta["epoch"] == 100
    same_features(loaded, vit, torch.randn(2, 3, 32, 32))


def test_dinov2_training_checkpoint_with_block_chunks(tmp_path, vit_reg4):
    # facebookresearch/dinov2 (fvcore checkpointer): {'model': SSLMetaArch.state_dict(),
    # 'iteration'}: teacher.backbone.* / student.backbone.*; with block_chunks the block keys
    # are blocks.<chunk>.<i>.* (BlockChunk); plus dino_head / ibot_head per branch
    chunked = {}
    for key, value in vit_reg4.state_dict().items():
        if key.startswith("blocks."):
            i = int(key.split(".")[1])
            key = f"blocks.{i}.{key.split('.', 1)[1]}"  # one block per chunk: blocks.i.i.*
        chunked[key] = value
    model = prefixed(chunked, "teacher.backbone.") | prefixed(
        {k: torch.zeros_like(v) for k, v in chunked.items()}, "student.backbone."
    )
    model |= prefixed(dino_head_state(out=HEAD["O"]), "teacher.dino_head.")
    torch.save({"model": model, "iteration": 12500}, tmp_path / "model_0012499.pth")
    loaded = load_gcd_checkpoint(tmp_path / "model_0012499.pth")
    assert loaded.format == "dinov2" and loaded.meta["iteration"] == 12500
    assert any("block chunks" in n for n in loaded.notes)
    same_features(loaded, vit_reg4, torch.randn(2, 3, 28, 28))


# ------------------------------------------------------------------- detection and forcing


def test_unplaceable_checkpoint_names_keys_and_formats_tried():
    with pytest.raises(CheckpointError) as info:
        detect_format({"encoder": {"w": torch.ones(1)}, "step": 3})
    message = str(info.value)
    assert "\n" not in message
    assert "top-level keys: encoder, step" in message
    assert (
        "tried the formats entangle, selex, eagc, get, simgcd, sptnet, cms, dino, dinov2, vit"
        in message
    )


def test_format_forces_a_layout_and_a_wrong_one_is_a_clear_error(tmp_path, vit):
    teacher = prefixed(vit.state_dict(), "backbone.")
    torch.save({"teacher": teacher}, tmp_path / "t.pth")
    forced = load_gcd_checkpoint(tmp_path / "t.pth", format="vit")
    assert forced.format == "vit"
    same_features(forced, vit, torch.randn(1, 3, 32, 32))
    with pytest.raises(CheckpointError, match="not a eagc checkpoint"):
        load_gcd_checkpoint(tmp_path / "t.pth", format="eagc")
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'nope'"):
        load_gcd_checkpoint(tmp_path / "t.pth", format="nope")


def test_cli_lists_formats_and_unplaceable_file_exits_2(tmp_path):
    import subprocess
    import sys

    from entangle.cli.app import app

    result = CliRunner().invoke(app, ["analyze", "--list-formats"])
    assert result.exit_code == 0, result.output
    for name in ("entangle", "simgcd", "sptnet", "eagc", "selex", "cms", "dino", "dinov2", "vit"):
        assert name in result.output
    assert "SimGCD, LegoGCD" in result.output and "InfoSieve" in result.output
    torch.save({"encoder": {"w": torch.ones(1)}}, tmp_path / "odd.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from entangle.cli.app import main; main()",
            "analyze",
            str(tmp_path / "odd.pt"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "top-level keys: encoder" in proc.stderr and "tried the formats" in proc.stderr


# ------------------------------------------------------------------------------------ SPTNet


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
def test_sptnet_prompter_acts_on_the_images(tmp_path, vit, prompt_type):
    from entangle.models.heads import GCDHead
    from tests.checkpoints.layout_data import SPTNET_ALL_PROMPTER, SPTNET_PATCH_PROMPTER

    sizes = {"S": 32, "pad": 6}
    rules = SPTNET_PATCH_PROMPTER if prompt_type == "patch" else SPTNET_ALL_PROMPTER
    gen = torch.Generator().manual_seed(3)
    prompter = {k: torch.randn(shape(r, sizes), generator=gen) for k, r in rules.items()}
    torch.manual_seed(4)
    head = GCDHead(64, 6, hidden_dim=32, proj_dim=16).eval()
    state = prompter | prefixed(vit.state_dict(), "1.0.") | prefixed(head.state_dict(), "1.1.")
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
        want = vit(prompted)
        torch.testing.assert_close(loaded.backbone(images), want, rtol=1e-6, atol=1e-6)
        for got, ref in zip(loaded.head(want), head(want), strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert len(loaded.backbone.blocks) == DEPTH  # the probed blocks are the ViT's


# --------------------------------------------------------------------------------------- GET


def clip_visual_reference(state: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """CLIP's VisionTransformer.forward (use_proj False) written out with functional ops,
    sequence-first as CLIP runs it, from the state dict alone."""
    import torch.nn.functional as F

    w = state["conv1.weight"].shape[0]
    t = F.conv2d(x, state["conv1.weight"], stride=state["conv1.weight"].shape[-1])
    t = t.reshape(t.shape[0], w, -1).permute(0, 2, 1)
    cls = state["class_embedding"] + torch.zeros(t.shape[0], 1, w)
    t = torch.cat([cls, t], dim=1) + state["positional_embedding"]
    t = F.layer_norm(t, (w,), state["ln_pre.weight"], state["ln_pre.bias"]).permute(1, 0, 2)
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in state:
        g = {
            k.split(".", 3)[3]: v
            for k, v in state.items()
            if k.startswith(f"transformer.resblocks.{i}.")
        }
        h = F.layer_norm(t, (w,), g["ln_1.weight"], g["ln_1.bias"])
        a, _ = F.multi_head_attention_forward(
            h,
            h,
            h,
            w,
            heads,
            g["attn.in_proj_weight"],
            g["attn.in_proj_bias"],
            None,
            None,
            False,
            0.0,
            g["attn.out_proj.weight"],
            g["attn.out_proj.bias"],
            need_weights=False,
        )
        t = t + a
        h = F.linear(
            F.layer_norm(t, (w,), g["ln_2.weight"], g["ln_2.bias"]),
            g["mlp.c_fc.weight"],
            g["mlp.c_fc.bias"],
        )
        t = t + F.linear(h * torch.sigmoid(1.702 * h), g["mlp.c_proj.weight"], g["mlp.c_proj.bias"])
        i += 1
    t = t.permute(1, 0, 2)
    return F.layer_norm(t[:, 0], (w,), state["ln_post.weight"], state["ln_post.bias"])


def test_get_clip_visual_backbone_and_head(tmp_path):
    from entangle.models.heads import GCDHead
    from entangle.models.vit_clip import CLIPVisionConfig, CLIPVisionTransformer
    from tests.checkpoints.layout_data import clip_visual_keys

    sizes = {"W": 64, "p": 8, "N": 16, "E": 32}
    torch.manual_seed(6)
    direct = CLIPVisionTransformer(
        CLIPVisionConfig(img_size=32, patch_size=8, width=64, layers=2, heads=1, output_dim=32)
    ).eval()
    want = {k: shape(r, sizes) for k, r in clip_visual_keys(2).items()}
    assert shapes(direct.state_dict()) == want  # CLIP's key names, exactly
    head = GCDHead(64, 6, hidden_dim=32, proj_dim=16).eval()
    clip_model = prefixed(direct.state_dict(), "visual.") | {
        "token_embedding.weight": torch.zeros(10, 32),  # text side: kept, not rebuilt
        "ln_final.weight": torch.ones(32),
        "logit_scale": torch.tensor(4.6),
    }
    save = {
        "backbone": clip_model,
        "model_tes_projector": {"weight": torch.zeros(8, 32), "bias": torch.zeros(8)},
        "ln_t": {"weight": torch.zeros(64, 32), "bias": torch.zeros(64)},
        "proj": head.state_dict(),
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 200,
    }
    torch.save(save, tmp_path / "model.pt")
    loaded = load_gcd_checkpoint(tmp_path / "model.pt")
    assert loaded.format == "get" and loaded.num_classes == 6 and loaded.meta["epoch"] == 200
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = loaded.backbone(images)
        torch.testing.assert_close(z, direct(images), rtol=0, atol=0)
        torch.testing.assert_close(
            z, clip_visual_reference(direct.state_dict(), images, 1), rtol=1e-5, atol=1e-5
        )
        for got, ref in zip(loaded.head(z), head(z), strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert any("text side" in n for n in loaded.notes)
