"""Models rebuilt from a file's architecture record: a closed set of builders, validated
configs, size limits checked before any block is built."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entangle.checkpoints import (
    CheckpointError,
    load_gcd_object,
)
from entangle.models.vit import VIT_CONFIGS, VisionTransformer, ViTConfig


@pytest.mark.parametrize(
    "arch",
    [
        {"factory": "os:system", "kwargs": {"command": "true"}},
        {"factory": "entangle.models.backbones:ResidualMLP", "kwargs": {"dim": 64}},
        {"kind": "timm", "config": {}},
        "vit",
    ],
)
def test_an_architecture_outside_the_closed_set_is_refused(vit, arch):
    """The file's architecture is data: no name in it is imported, even an entangle one."""
    obj = {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": arch}},
    }
    with pytest.raises(CheckpointError, match=r"does not build.*--model package.module:factory"):
        load_gcd_object(obj)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("depth", "3"),
        ("depth", True),
        ("embed_dim", -64),
        ("mlp_ratio", float("nan")),
        ("qkv_bias", 1),
        ("layer_scale", "x"),
        ("evil", 1),
        ("num_heads", 5),
    ],
)
def test_a_vit_config_in_the_file_is_validated(vit, field, value):
    config = VIT_CONFIGS["vit-tiny-test"].to_dict() | {field: value}
    obj = {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": config}}},
    }
    with pytest.raises(CheckpointError, match="meta.arch.backbone.config"):
        load_gcd_object(obj)


def arch_checkpoint(vit, **config) -> dict:
    cfg = VIT_CONFIGS["vit-tiny-test"].to_dict() | config
    return {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": cfg}}},
    }


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        ({"depth": 65536, "embed_dim": 65536, "num_heads": 1}, "ENTANGLE_MAX_MODEL_DEPTH=N"),
        ({"embed_dim": 65536, "num_heads": 1}, "ENTANGLE_MAX_MODEL_PARAMS=N"),
        ({"img_size": 65536, "patch_size": 65536}, "ENTANGLE_MAX_IMAGE_SIZE=N"),
        ({"img_size": 1024, "patch_size": 1}, r"1048577 tokens.*ENTANGLE_MAX_VIT_TOKENS=N"),
        ({"num_register_tokens": 65536}, "ENTANGLE_MAX_VIT_TOKENS=N"),
        ({"depth": 200}, "but the file's backbone holds"),
    ],
)
def test_an_oversized_meta_arch_is_refused_before_any_module_is_built(
    vit, config, phrase, monkeypatch
):
    """A 65536-block record took 69 s and 3.2 GB before refusing; now no block is built."""
    import entangle.checkpoints.rebuild as rebuild

    built = []
    monkeypatch.setattr(rebuild, "VisionTransformer", lambda cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match=phrase) as info:
        load_gcd_object(arch_checkpoint(vit, **config))
    assert "\n" not in str(info.value) and built == []


@pytest.mark.parametrize(
    "config",
    [
        dict(embed_dim=1024, depth=24, num_heads=16),  # ViT-L/16
        dict(img_size=518, patch_size=14, embed_dim=1536, depth=40, num_heads=24),  # ViT-g/14
        *[c.to_dict() for name, c in VIT_CONFIGS.items() if name != "vit-tiny-test"],
    ],
)
def test_real_vit_sizes_pass_the_limits(config):
    """ViT-L, ViT-g and every preset entangle builds stay under the default limits."""
    from entangle.checkpoints.rebuild import _check_vit_size, vit_weight_count

    cfg = ViTConfig(**config)
    _check_vit_size(cfg, None, "x", "meta.arch.backbone.config")
    with torch.device("meta"):
        actual = sum(p.numel() for p in VisionTransformer(cfg).parameters())
    assert 0.95 * actual < vit_weight_count(cfg) <= actual  # a tight lower bound


@pytest.mark.parametrize("backbone", ["vit", "digits"])
def test_one_key_cannot_ask_for_a_hundred_million_blocks(vit, backbone, monkeypatch):
    """Depth read off tensor names is 1 + the largest block index: one extra key named
    blocks.99999999.* asked for 10^8 blocks (20000 took 21 s before the strict load refused)."""
    from entangle.models.backbones import ResidualMLP

    model = vit if backbone == "vit" else ResidualMLP(in_dim=64, dim=16, depth=2)
    state = model.state_dict()
    state["blocks.99999999.fc1.weight"] = torch.zeros(1)
    obj = {"entangle_checkpoint": 1, "backbone": state, "head": None, "meta": {}}
    with pytest.raises(CheckpointError, match=r"100000000 blocks.*ENTANGLE_MAX_MODEL_DEPTH=N"):
        load_gcd_object(obj)
    monkeypatch.setenv("ENTANGLE_MAX_MODEL_DEPTH", "3")  # a real model at its limit loads
    del state["blocks.99999999.fc1.weight"]
    assert load_gcd_object(obj).backbone is not None


@functools.cache
def _tiny_vit_state() -> dict:
    return VisionTransformer(VIT_CONFIGS["vit-tiny-test"]).state_dict()


_FIELD_VALUES = st.one_of(
    st.integers(-2, 1 << 17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@settings(max_examples=30, deadline=None)
@given(
    config=st.dictionaries(
        st.sampled_from([f.name for f in dataclasses.fields(ViTConfig)] + ["factory"]),
        _FIELD_VALUES,
        max_size=6,
    )
)
def test_any_meta_arch_config_loads_or_is_a_checkpoint_error(config):
    """Whatever meta.arch.backbone.config holds, the outcome is a model or a CheckpointError
    (the CLI's one line, exit 2), reached without building past the limits."""
    obj = {
        "entangle_checkpoint": 1,
        "backbone": _tiny_vit_state(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": config}}},
    }
    try:
        load_gcd_object(obj)
    except CheckpointError:
        pass
