"""GET: the CLIP visual backbone and the class head, checked against a reference forward."""

from __future__ import annotations

import torch

from entangle.checkpoints import (
    load_gcd_checkpoint,
)
from entangle.models.heads import GCDHead
from tests.checkpoints.layout_data import shape
from tests.checkpoints.layouts.tiny import (
    shapes,
)
from tests.checkpoints.models import prefixed


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
