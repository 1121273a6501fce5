"""Backbone splitting: timm / DINO / DINOv2 / entangle layouts cut so prefix + suffix == forward."""

from __future__ import annotations

import copy

import pytest
import torch

from entangle import EAGC, ProbeSet, SharedPrefix, last_block
from entangle.errors import EntangleTypeError
from entangle.models.vit import build_vit
from entangle.nn.prefix import first_trainable_block, run_prefix, run_suffix
from entangle.nn.splits import find_split
from entangle.probing.probeset import full_embedding
from tests.support.hub_vits import DinoStyleViT, Dinov2StyleViT, grad_from_block


def _images(n=6, size=16, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _builtin():
    return build_vit("vit-tiny-test", img_size=16)


BUILDERS = {"dino": DinoStyleViT, "dinov2": Dinov2StyleViT, "entangle": _builtin}


def assert_features(got, want, class_token_pool):
    """Features without autograd: with class-token pooling the last block runs on the class
    token's row (entangle.nn.class_token), equal to float32 rounding; otherwise bit-exact."""
    if class_token_pool:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(got, want)


def check_backbone(model, layout, x, grad_from=2):
    """Everything issue 13 asks of a backbone: layout, exact split, grad_from_block default,
    SharedPrefix / ProbeSet / EAGC.fit / last_block on it."""
    torch.manual_seed(0)
    grad_from_block(model, grad_from)
    model.eval()
    split = find_split(model)
    assert split is not None and split.layout == layout
    with torch.no_grad():
        full = model(x)
        for i in range(len(split.blocks) + 1):
            # the cut replays the module's own forward op for op: bit-identical
            assert (run_suffix(model, run_prefix(model, x, i), i) - full).abs().max() == 0.0
    assert first_trainable_block(model) == grad_from

    reference = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        for p in reference.blocks[grad_from:].parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference.eval()
    shared = SharedPrefix(model, reference)
    assert shared.split_at == grad_from
    z, z_ref = shared(x)
    with torch.no_grad():
        assert_features(z_ref, reference(x), split.class_token_pool)
    # the live suffix (with autograd) is the module's own forward: bit-identical
    assert (z.detach() - full).abs().max() == 0.0 and z.requires_grad

    labeled = torch.tensor([True, True, True, False, False, False])
    novel = torch.tensor([False, False, False, False, True, True])
    cached = ProbeSet(model, x, labeled, novel, k=2)
    assert cached.split_at == grad_from
    assert_features(cached.features(model), full_embedding(model, x), split.class_token_pool)

    eagc = EAGC.fit(reference, [x[:3], x[3:]])
    assert eagc.conceptor.shape == (full.shape[1], full.shape[1])

    block = set(map(id, last_block(model)))
    assert block == set(map(id, split.blocks[-1].parameters()))


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_hub_and_builtin_layouts_split_exactly(layout):
    torch.manual_seed(1)
    check_backbone(BUILDERS[layout](), layout, _images())


class Unsplittable(torch.nn.Module):
    """A user's module with none of the known layouts."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)
        self.fc = torch.nn.Linear(64, 8)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_unknown_module_gets_one_error_naming_the_fallback_and_the_fallback_works():
    model, reference = Unsplittable(), Unsplittable().eval()
    x = _images()
    labeled = torch.tensor([True, True, True, False, False, False])
    novel = ~labeled
    with pytest.raises(EntangleTypeError, match=r"prepare_tokens/blocks/norm.*split_at=0"):
        SharedPrefix(model, reference)
    with pytest.raises(EntangleTypeError, match=r"_pos_embed.*exact=True"):
        ProbeSet(model, x, labeled, novel, k=2)

    shared = SharedPrefix(model, reference, split_at=0)
    z, z_ref = shared(x)
    with torch.no_grad():
        assert torch.equal(z_ref, reference(x))
        assert torch.equal(z.detach(), model(x))
    assert z.requires_grad and not z_ref.requires_grad
    exact = ProbeSet(model, x, labeled, novel, k=2, exact=True)
    assert torch.equal(exact.features(model), full_embedding(model, x))


def test_split_at_zero_still_checks_the_reference_mode():
    from entangle.errors import EntangleRuntimeError

    shared = SharedPrefix(Unsplittable(), Unsplittable().train(), split_at=0)
    with pytest.raises(EntangleRuntimeError, match=r"reference.eval\(\)"):
        shared(_images())


def _timm_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    base = dict(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=0)
    return VisionTransformer(**(base | kw))


@pytest.mark.extras
@pytest.mark.parametrize(
    "kw",
    [
        {},
        # DINOv2-style register tokens (timm stores them as reg_token)
        {"reg_tokens": 4},
        {"reg_tokens": 2, "no_embed_class": True, "global_pool": "avg", "fc_norm": True},
        {"class_token": False, "global_pool": "avg"},
        # a classifier head: the split's output is still what forward() returns
        {"num_classes": 5},
    ],
)
def test_timm_vision_transformer_splits_exactly(kw):
    pytest.importorskip("timm")
    torch.manual_seed(2)
    check_backbone(_timm_vit(**kw), "timm", _images())


def test_eagc_fit_takes_simgcd_batches_with_a_list_of_views():
    torch.manual_seed(3)
    reference = DinoStyleViT().eval()
    x = _images()
    views_batches = [([x[:3], x[3:]], torch.zeros(3), torch.arange(3), torch.ones(3))]
    a = EAGC.fit(reference, views_batches)
    b = EAGC.fit(reference, [x])
    assert torch.equal(a.conceptor, b.conceptor)
