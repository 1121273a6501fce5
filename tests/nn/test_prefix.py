"""SharedPrefix: one prefix forward forked into live and reference suffixes, bit-exact."""

from __future__ import annotations

import copy

import pytest
import torch

from entangle import SharedPrefix
from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError
from entangle.nn.prefix import first_trainable_block
from tests.support.toy import ToyBackbone, toy_batch


def frozen_toy(frozen_blocks: int = 2, seed: int = 0) -> ToyBackbone:
    """Toy backbone (float64) with the stem and ``blocks[:frozen_blocks]`` frozen."""
    torch.manual_seed(seed)
    backbone = ToyBackbone(depth=4).double()
    backbone.stem.requires_grad_(False)
    for block in backbone.blocks[:frozen_blocks]:
        block.requires_grad_(False)
    return backbone


def reference_of(live: ToyBackbone) -> ToyBackbone:
    """Same frozen prefix, other suffix weights (a labeled-only fine-tune), in eval mode."""
    reference = copy.deepcopy(live)
    split = first_trainable_block(live)
    with torch.no_grad():
        for block in reference.blocks[split:]:
            for p in block.parameters():
                p.add_(0.1 * torch.randn_like(p))
        for p in reference.norm.parameters():
            p.mul_(1.1)
    return reference.requires_grad_(False).eval()


@pytest.fixture
def pair():
    live = frozen_toy()
    return live, reference_of(live)


def test_reference_features_bit_identical_to_separate_forward(pair):
    live, reference = pair
    shared = SharedPrefix(live, reference)
    assert shared.split_at == 2
    x = toy_batch(n=10)[0]
    _, z_ref = shared(x)
    with torch.no_grad():
        want = reference(x)
    assert torch.equal(z_ref, want)
    assert not z_ref.requires_grad
    # the suffixes really differ, so a fork into the wrong suffix would be caught
    assert not torch.allclose(z_ref, live(x))


def test_live_features_and_gradients_equal_plain_forward(pair):
    live, reference = pair
    shared = SharedPrefix(live, reference)
    x = toy_batch(n=10)[0]
    weights = torch.randn(10, live.feature_dim, dtype=torch.float64)

    z, _ = shared(x)
    (z * weights).sum().backward()
    got = {n: p.grad.clone() for n, p in live.named_parameters() if p.requires_grad}
    live.zero_grad()

    want_z = live(x)
    (want_z * weights).sum().backward()
    assert torch.equal(z, want_z)
    for name, p in live.named_parameters():
        if p.requires_grad:
            assert torch.equal(got[name], p.grad), name
        else:
            assert p.grad is None, name
    assert set(got) == {n for n, p in live.named_parameters() if p.requires_grad}


def test_different_prefixes_are_refused(pair):
    live, reference = pair
    with torch.no_grad():
        reference.blocks[1][0].bias[0] += 1e-12
    with pytest.raises(EntangleValueError, match="bit-identical"):
        SharedPrefix(live, reference)


def test_prefix_of_other_shape_is_refused():
    live = frozen_toy()
    other = ToyBackbone(width=9, depth=4).double().eval()
    with pytest.raises(EntangleValueError, match="differ in their first 2 blocks"):
        SharedPrefix(live, other)


@pytest.mark.parametrize("which", ["live", "reference"])
@pytest.mark.parametrize(
    "change",
    ["in_place", "data_assignment", "new_parameter"],
)
def test_prefix_changed_after_construction_is_detected(pair, which, change):
    live, reference = pair
    shared = SharedPrefix(live, reference)
    x = toy_batch(n=4)[0]
    shared(x)
    model = live if which == "live" else reference
    weight = model.blocks[0][0].weight
    if change == "in_place":
        with torch.no_grad():
            weight.add_(1e-3)  # moves the version counter
    elif change == "data_assignment":
        weight.data = weight.detach() + 1e-3  # what Module.to() / .double() do
    else:
        model.blocks[0][0].weight = torch.nn.Parameter(weight.detach() + 1e-3, False)
    with pytest.raises(EntangleValueError, match="bit-identical"):
        shared(x)


def test_identical_in_place_update_of_both_reverifies_and_passes(pair):
    live, reference = pair
    shared = SharedPrefix(live, reference)
    x = toy_batch(n=4)[0]
    with torch.no_grad():
        for model in (live, reference):
            model.stem.weight.mul_(0.5)
    z, z_ref = shared(x)
    with torch.no_grad():
        assert torch.equal(z_ref, reference(x))
        assert torch.equal(z, live(x))


def test_trainable_prefix_is_refused():
    live = frozen_toy(frozen_blocks=2)
    reference = reference_of(live)
    with pytest.raises(EntangleValueError, match="trainable"):
        SharedPrefix(live, reference, split_at=3)
    live.stem.requires_grad_(True)
    with pytest.raises(EntangleValueError, match="trainable"):
        SharedPrefix(live, reference, split_at=1)


def test_split_outside_the_blocks_is_refused(pair):
    live, reference = pair
    with pytest.raises(EntangleValueError, match="outside 0..4"):
        SharedPrefix(live, reference, split_at=5)


def test_reference_in_training_mode_is_refused(pair):
    live, reference = pair
    shared = SharedPrefix(live, reference)
    reference.train()
    with pytest.raises(EntangleRuntimeError, match="eval"):
        shared(toy_batch(n=4)[0])


def test_backbone_without_the_protocol_is_refused(pair):
    live, _ = pair
    with pytest.raises(EntangleTypeError, match="embed/blocks/pool.*split_at=0"):
        SharedPrefix(live, torch.nn.Linear(3, 3))
    with pytest.raises(EntangleTypeError):
        first_trainable_block(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def _toy_with(frozen: set[str]) -> ToyBackbone:
    backbone = ToyBackbone(depth=3)
    for name, module in [("stem", backbone.stem), ("norm", backbone.norm)] + [
        (f"blocks.{i}", b) for i, b in enumerate(backbone.blocks)
    ]:
        module.requires_grad_(name not in frozen)
    return backbone


@pytest.mark.parametrize(
    ("frozen", "want"),
    [
        (set(), 0),
        ({"stem"}, 0),
        ({"stem", "blocks.0"}, 1),
        ({"stem", "blocks.0", "blocks.1"}, 2),
        # only the final norm trains: every block is prefix
        ({"stem", "blocks.0", "blocks.1", "blocks.2"}, 3),
        ({"stem", "blocks.0", "blocks.1", "blocks.2", "norm"}, 3),
        # a trainable stem makes the whole model suffix, whatever the blocks do
        ({"blocks.0", "blocks.1"}, 0),
        # the first trainable block counts, not the first run of frozen ones after it
        ({"stem", "blocks.1"}, 0),
        ({"stem", "blocks.0", "blocks.2"}, 1),
    ],
)
def test_first_trainable_block(frozen, want):
    assert first_trainable_block(_toy_with(frozen)) == want


@pytest.mark.parametrize("trainable_blocks", [0, 1, 2, 4])
def test_first_trainable_block_agrees_with_freeze_prefix(trainable_blocks):
    from entangle.models.backbones import build_backbone, freeze_prefix

    backbone = build_backbone("digits-mlp", in_dim=12, dim=8, depth=4)
    split = freeze_prefix(backbone, trainable_blocks)
    assert first_trainable_block(backbone) == split == 4 - trainable_blocks


def test_digits_backbone_shares_its_prefix():
    from entangle.models.backbones import build_backbone, freeze_prefix

    torch.manual_seed(0)
    live = build_backbone("digits-mlp", in_dim=12, dim=8, depth=3).double()
    freeze_prefix(live, 1)
    reference = copy.deepcopy(live)
    with torch.no_grad():
        for p in reference.blocks[2].parameters():
            p.add_(0.1)
    reference.eval()
    shared = SharedPrefix(live, reference)
    assert shared.split_at == 2
    x = torch.randn(6, 12, dtype=torch.float64)
    z, z_ref = shared(x)
    with torch.no_grad():
        assert torch.equal(z_ref, reference(x))
        assert torch.equal(z, live(x))
