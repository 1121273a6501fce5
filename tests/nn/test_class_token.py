"""The class-token path of the last block: equal to the full block's row 0 up to float rounding,
taken only where it applies, and the full block everywhere else."""

from __future__ import annotations

import pytest
import torch

from entangle.models.vit import VisionTransformer, ViTConfig, build_vit
from entangle.models.vit_vpt import VPTVisionTransformer
from entangle.nn.class_token import class_token_row
from entangle.nn.prefix import run_prefix, run_suffix, suffix_features
from entangle.nn.splits import find_split
from tests.support.hub_vits import DinoStyleViT, Dinov2StyleViT
from tests.support.toy import ToyBackbone, toy_batch

# float32: the row path blocks its GEMMs differently, so rows agree to rounding, not bit for bit
TOL = {"rtol": 1e-5, "atol": 1e-6}

TINY = ViTConfig(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=4)
BUILTIN = {
    "plain": TINY,
    # DINOv2's layout: layer scale and register tokens after the class token
    "dinov2-reg": ViTConfig(
        img_size=16,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=4,
        layer_scale=0.5,
        num_register_tokens=4,
    ),
}


def _images(n=5, size=16, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomise(model):
    # trained-like weights: zero biases and tiny class tokens would hide layout mistakes
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def _mlp_tokens(block):
    """Records the token count the block's MLP sees (1 on the class-token path)."""
    seen = []
    block.mlp.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    return seen


def assert_row_path(model, x, split_at=1):
    """suffix_features runs the last block on one row and matches run_suffix to TOL."""
    split = find_split(model)
    assert split.class_token_pool
    seen = _mlp_tokens(split.blocks[-1])
    with torch.no_grad():
        h = run_prefix(model, x, split_at)
        full = run_suffix(model, h, split_at)
        assert seen.pop() > 1
        got = suffix_features(model, h, split_at)
        assert seen.pop() == 1
        torch.testing.assert_close(got, full, **TOL)
        assert torch.equal(model(x), full)
        # the block alone: row 0 of its output
        block_in = h
        for block in split.blocks[split_at:-1]:
            block_in = block(block_in)
        row = class_token_row(split.blocks[-1])
        want = split.blocks[-1](block_in)[:, :1]
        torch.testing.assert_close(row(block_in), want, **TOL)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_vit_class_token_path_matches_the_full_block(name):
    torch.manual_seed(0)
    assert_row_path(_randomise(VisionTransformer(BUILTIN[name])), _images())


@pytest.mark.parametrize("layout", [DinoStyleViT, Dinov2StyleViT])
def test_hub_layouts_with_builtin_blocks_take_the_class_token_path(layout):
    torch.manual_seed(0)
    assert_row_path(_randomise(layout()), _images(), split_at=2)


def _timm_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

    base = dict(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=0)
    return _randomise(TimmVisionTransformer(**(base | kw)))


@pytest.mark.extras
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"qkv_bias": False},
        {"qk_norm": True, "init_values": 0.5},
        {"reg_tokens": 4},
        {"num_classes": 5},
    ],
)
def test_timm_vision_transformer_class_token_path_matches_the_full_block(kw):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    assert_row_path(_timm_vit(**kw), _images())


@pytest.mark.extras
def test_timm_adapter_takes_the_class_token_path():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    assert_row_path(_randomise(build_vit("vit-tiny-test", img_size=16, backend="timm")), _images())


def _exact_fallback(model, x, split_at=1):
    """suffix_features is run_suffix itself: bit-identical, the block on every row."""
    with torch.no_grad():
        h = run_prefix(model, x, split_at)
        assert torch.equal(suffix_features(model, h, split_at), run_suffix(model, h, split_at))


@pytest.mark.extras
@pytest.mark.parametrize(
    "kw",
    [
        {"global_pool": "avg"},
        {"class_token": False, "global_pool": "avg"},
        {"global_pool": "map"},  # attention pooling reads every token
    ],
)
def test_timm_pooling_over_all_tokens_runs_the_full_block(kw):
    pytest.importorskip("timm")
    model = _timm_vit(**kw)
    assert not find_split(model).class_token_pool
    _exact_fallback(model, _images())


def test_no_path_with_autograd_training_mode_or_hooks():
    model = _randomise(VisionTransformer(TINY))
    block = model.blocks[-1]
    assert class_token_row(block) is None  # autograd is on here
    with torch.no_grad():
        assert class_token_row(block) is not None
        block.mlp.train()
        assert class_token_row(block) is None
        block.mlp.eval()
        handle = block.register_forward_hook(lambda *a: None)
        assert class_token_row(block) is None
        handle.remove()
        assert class_token_row(block) is not None


def test_a_subclass_overriding_forward_or_pool_falls_back():
    # VPT's prompted blocks override forward (the prompt swap): the row path is not theirs
    vpt = VPTVisionTransformer(TINY, num_prompts=2, prompt_layers=3).eval()
    with torch.no_grad():
        assert class_token_row(vpt.blocks[-1]) is None
    _exact_fallback(vpt, _images())

    class MeanPool(VisionTransformer):
        def pool(self, h):
            return self.norm(h).mean(1)

    model = _randomise(MeanPool(TINY))
    assert not find_split(model).class_token_pool
    _exact_fallback(model, _images())


def test_vector_backbones_and_unknown_blocks_run_in_full():
    model = ToyBackbone(depth=3).double().eval()
    assert not find_split(model).class_token_pool
    with torch.no_grad():
        assert class_token_row(model.blocks[-1]) is None
    _exact_fallback(model, toy_batch(n=6)[0])
