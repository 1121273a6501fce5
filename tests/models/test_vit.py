"""The built-in ViT: DINO key layout, protocol, attention maths, weights loading, resampling."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entangle.checkpoints import CheckpointError, backbone_state_from, load_pretrained_vit
from entangle.errors import EntangleValueError
from entangle.models.vit import (
    VIT_CONFIGS,
    Attention,
    VisionTransformer,
    ViTConfig,
    build_vit,
    infer_vit_config,
)


def dino_vit_b16_layout() -> dict[str, tuple[int, ...]]:
    """DINO ViT-B/16 (``dino_vitb16``, no head) as documented: 224 px, 16 px patches,
    width 768, 12 blocks, MLP width 3072, qkv with bias, final LayerNorm."""
    layout = {
        "cls_token": (1, 1, 768),
        "pos_embed": (1, 197, 768),  # 1 class position + 14 * 14 patches
        "patch_embed.proj.weight": (768, 3, 16, 16),
        "patch_embed.proj.bias": (768,),
        "norm.weight": (768,),
        "norm.bias": (768,),
    }
    per_block = {
        "norm1.weight": (768,),
        "norm1.bias": (768,),
        "attn.qkv.weight": (2304, 768),
        "attn.qkv.bias": (2304,),
        "attn.proj.weight": (768, 768),
        "attn.proj.bias": (768,),
        "norm2.weight": (768,),
        "norm2.bias": (768,),
        "mlp.fc1.weight": (3072, 768),
        "mlp.fc1.bias": (3072,),
        "mlp.fc2.weight": (768, 3072),
        "mlp.fc2.bias": (768,),
    }
    for i in range(12):
        layout.update({f"blocks.{i}.{k}": v for k, v in per_block.items()})
    return layout


def tiny(**changes) -> VisionTransformer:
    return VisionTransformer(replace(VIT_CONFIGS["vit-tiny-test"], **changes))


def test_vit_b16_keys_and_shapes_match_dino_layout():
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_vit("vit-b16")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == dino_vit_b16_layout()
    # ViT-B/16 without a classifier has 85.8M parameters (the published count)
    assert sum(math.prod(s) for s in got.values()) == 85_798_656


def test_dinov2_options_add_the_official_keys():
    model = tiny(num_register_tokens=4, layer_scale=1e-5, mask_token=True)
    sd = model.state_dict()
    assert sd["register_tokens"].shape == (1, 4, 64)
    assert sd["mask_token"].shape == (1, 64)
    assert sd["blocks.2.ls1.gamma"].shape == (64,)
    assert sd["blocks.2.ls2.gamma"].shape == (64,)
    assert sd["pos_embed"].shape == (1, 1 + 16, 64)  # registers carry no position
    assert "ls1.gamma" not in "".join(tiny().state_dict())


def test_forward_shapes_and_protocol():
    model = tiny(num_register_tokens=2).eval()
    x = torch.randn(3, 3, 32, 32)
    tokens = model.embed(x)
    assert tokens.shape == (3, 1 + 2 + 16, 64)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 3
    h = tokens
    for block in model.blocks:
        h = block(h)
    z = model.pool(h)
    assert z.shape == (3, model.feature_dim) == (3, 64)
    torch.testing.assert_close(model(x), z, rtol=0, atol=0)
    # pool is the final LayerNorm of the class token
    torch.testing.assert_close(
        z, F.layer_norm(h[:, 0], (64,), model.norm.weight, model.norm.bias, 1e-6)
    )


def test_registers_sit_after_cls_without_position():
    model = tiny(num_register_tokens=2)
    with torch.no_grad():
        model.register_tokens.copy_(torch.randn(1, 2, 64))
    tokens = model.embed(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(tokens[:, 1:3], model.register_tokens)
    torch.testing.assert_close(tokens[:, 0], model.cls_token[:, 0] + model.pos_embed[:, 0])


def test_attention_matches_explicit_softmax():
    torch.manual_seed(1)
    attn = Attention(48, num_heads=4)
    x = torch.randn(2, 7, 48, dtype=torch.float64)
    attn = attn.double()
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).split(48, dim=-1)

    def heads(t):  # [n, T, D] -> [n, heads, T, head_dim]
        return t.reshape(2, 7, 4, 12).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(12), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(2, 7, 48)
    expected = out @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, rtol=1e-10, atol=1e-12)


def test_pretrained_strict_round_trip(tmp_path):
    src = tiny().eval()
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    loaded = load_pretrained_vit(build_vit("vit-tiny-test"), path).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)


def test_pretrained_dino_training_checkpoint_layout(tmp_path):
    src = tiny().eval()
    teacher = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    teacher["module.head.last_layer.weight_v"] = torch.randn(10, 8)  # DINO's own head: dropped
    path = tmp_path / "dino_full.pth"
    torch.save({"teacher": teacher, "epoch": 100}, path)
    loaded = load_pretrained_vit(build_vit("vit-tiny-test"), path).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)


def test_pretrained_needing_code_requires_trust(tmp_path):
    import argparse

    src = tiny().eval()
    path = tmp_path / "dino_full.pth"  # DINO's full checkpoints also store the run's args
    torch.save({"teacher": src.state_dict(), "args": argparse.Namespace(arch="vit")}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_pretrained_vit(build_vit("vit-tiny-test"), path)
    loaded = load_pretrained_vit(build_vit("vit-tiny-test"), path, trust=True).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)


def test_pretrained_missing_key_is_listed(tmp_path):
    sd = tiny().state_dict()
    del sd["blocks.1.attn.proj.weight"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        load_pretrained_vit(build_vit("vit-tiny-test"), tmp_path / "w.pth")
    assert "blocks.1.attn.proj.weight" in str(info.value)
    assert "extra.weight" in str(info.value)


def test_pretrained_wrong_architecture_lists_shape_mismatch(tmp_path):
    sd = tiny().state_dict()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(128, 64)  # an MLP ratio of 2, not 4
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="shape mismatches") as info:
        load_pretrained_vit(build_vit("vit-tiny-test"), tmp_path / "w.pth")
    assert "blocks.0.mlp.fc1.weight: file (128, 64) vs model (256, 64)" in str(info.value)


def test_other_input_size_uses_resampled_position_embedding(tmp_path):
    src = tiny().eval()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    big = load_pretrained_vit(build_vit("vit-tiny-test", img_size=48), tmp_path / "w.pth").eval()
    assert big.pos_embed.shape == (1, 1 + 36, 64)
    x = torch.randn(2, 3, 48, 48)
    # resampled once at load time == resampled on the fly by the 32-px model
    torch.testing.assert_close(big(x), src(x), rtol=1e-6, atol=1e-6)
    assert src(torch.randn(1, 3, 40, 24)).shape == (1, 64)  # non-square grids work too


def test_deterministic_for_a_seed():
    torch.manual_seed(3)
    a = tiny()
    torch.manual_seed(3)
    b = tiny()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), a(x))


def test_infer_config_round_trip():
    cfg = replace(
        VIT_CONFIGS["vit-tiny-test"], num_register_tokens=4, layer_scale=1e-5, mask_token=True
    )
    assert infer_vit_config(VisionTransformer(cfg).state_dict()) == cfg
    with torch.device("meta"):
        sd = build_vit("vit-b14-reg4-dinov2").state_dict()
    inferred = infer_vit_config(sd)
    assert (inferred.img_size, inferred.patch_size, inferred.num_register_tokens) == (518, 14, 4)
    assert inferred == VIT_CONFIGS["vit-b14-reg4-dinov2"]


def test_backbone_state_from_renames_timm_register_spelling():
    sd = {"module.backbone.reg_token": torch.zeros(1, 4, 8), "head.weight": torch.zeros(1)}
    assert list(backbone_state_from(sd)) == ["register_tokens"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "vit-h14"}, "unknown ViT"),
        ({"name": "vit-s16", "backend": "jax"}, "backend"),
        ({"name": "vit-s16", "img_size": 100}, "multiple of the patch size"),
    ],
)
def test_build_vit_rejects_bad_arguments(kwargs, match):
    with pytest.raises(EntangleValueError, match=match):
        build_vit(**kwargs)


def test_bad_input_shape_is_explained():
    with pytest.raises(EntangleValueError, match="multiple of the patch size"):
        tiny()(torch.zeros(1, 3, 30, 32))
    with pytest.raises(EntangleValueError, match="expected images"):
        tiny()(torch.zeros(1, 1, 32, 32))


def test_timm_backend_without_timm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(EntangleValueError, match="pip install"):
        build_vit("vit-s16", backend="timm")


def test_timm_adapter_keeps_keys_and_outputs(monkeypatch):
    """A stand-in for timm's VisionTransformer (same attribute names) behind the adapter."""
    reference = tiny().eval()

    class FakeTimmViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_dim = 64
            self.cls_token = nn.Parameter(reference.cls_token.detach().clone())
            self.reg_token = None
            self.no_embed_class = False
            self.pos_embed = nn.Parameter(reference.pos_embed.detach().clone())
            self.patch_embed = reference.patch_embed
            self.pos_drop = nn.Dropout(0.0)
            self.norm_pre = nn.Identity()
            self.blocks = nn.Sequential(*reference.blocks)
            self.norm = reference.norm
            self.head = nn.Identity()

    fake = types.ModuleType("timm")
    fake.create_model = lambda arch, **kw: FakeTimmViT()
    fake_vt = types.ModuleType("timm.models.vision_transformer")
    fake_vt.VisionTransformer = lambda **kw: FakeTimmViT()
    monkeypatch.setitem(sys.modules, "timm", fake)
    monkeypatch.setitem(sys.modules, "timm.models", types.ModuleType("timm.models"))
    monkeypatch.setitem(sys.modules, "timm.models.vision_transformer", fake_vt)
    adapted = build_vit("vit-tiny-test", backend="timm").eval()
    shapes = {k: v.shape for k, v in adapted.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    assert isinstance(adapted.blocks, nn.ModuleList)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(adapted(x), reference(x), rtol=0, atol=0)
    with pytest.raises(EntangleValueError, match="DINOv2"):
        build_vit("vit-b14-dinov2", backend="timm")


def test_auto_backend_is_builtin_even_with_timm_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", types.ModuleType("timm"))
    assert isinstance(build_vit("vit-tiny-test"), VisionTransformer)


def test_configs_are_consistent():
    for name, cfg in VIT_CONFIGS.items():
        assert isinstance(cfg, ViTConfig)
        assert cfg.img_size % cfg.patch_size == 0, name
        assert cfg.embed_dim % cfg.num_heads == 0, name


@pytest.mark.gpu
def test_runs_on_cuda_like_on_cpu():
    model = tiny().eval()
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    got = model.to("cuda")(x.to("cuda")).cpu()
    # cuDNN may run the patch convolution in TF32: compare loosely
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)
