"""The small digits backbone follows the block protocol; freeze_prefix freezes the right parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.backbones import ResidualMLP, build_backbone, freeze_prefix


def test_protocol_shapes_and_composition():
    bb = build_backbone("digits-mlp")
    assert isinstance(bb, ResidualMLP) and bb.feature_dim == 128
    assert isinstance(bb.blocks, nn.ModuleList) and len(bb.blocks) == 4
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, _ in bb.named_parameters() if "." in n}
    assert {"blocks.0", "blocks.3"} <= names
    x = torch.rand(5, 1, 8, 8)
    z = bb(x)
    assert z.shape == (5, 128)
    # forward = pool(blocks(embed(x))), and any split point composes to the same thing
    for i in range(len(bb.blocks) + 1):
        h = bb.embed(x)
        for block in bb.blocks[:i]:
            h = block(h)
        for block in bb.blocks[i:]:
            h = block(h)
        torch.testing.assert_close(bb.pool(h), z)


def test_flat_inputs_and_other_widths():
    bb = build_backbone("digits-mlp", in_dim=32, dim=16, depth=2)
    assert bb(torch.randn(3, 32)).shape == (3, 16)
    with pytest.raises(EntangleValueError, match="expects 32 input numbers.*in_dim=64"):
        bb(torch.rand(3, 1, 8, 8))


def test_unknown_backbone():
    with pytest.raises(EntangleValueError, match="unknown backbone 'resnet'.*digits-mlp"):
        build_backbone("resnet")
    with pytest.raises(EntangleTypeError):
        build_backbone(3)


def test_freeze_prefix_last_block_only():
    bb = build_backbone("digits-mlp")
    first = freeze_prefix(bb, 1)
    assert first == 3
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in bb.named_parameters() if n.startswith("blocks.3.")}
    # the frozen prefix gets no gradient, the last block does
    bb(torch.rand(4, 1, 8, 8)).sum().backward()
    assert bb.stem.weight.grad is None and bb.blocks[2].fc1.weight.grad is None
    assert bb.blocks[3].fc1.weight.grad is not None


def test_freeze_prefix_counts_and_refreezes():
    bb = build_backbone("digits-mlp", depth=3)
    assert freeze_prefix(bb, 0) == 3
    assert not any(p.requires_grad for p in bb.parameters())
    assert freeze_prefix(bb, 3) == 0
    frozen = {n for n, p in bb.named_parameters() if not p.requires_grad}
    assert frozen == {"stem.weight", "stem.bias", "norm.weight", "norm.bias"}
    assert freeze_prefix(bb, 1) == 2
    assert sum(p.requires_grad for p in bb.parameters()) == len(list(bb.blocks[2].parameters()))
    with pytest.raises(EntangleValueError, match="between 0 and 3"):
        freeze_prefix(bb, 4)
    with pytest.raises(EntangleTypeError, match="ModuleList 'blocks'"):
        freeze_prefix(nn.Linear(2, 2))
