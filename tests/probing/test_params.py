"""entangle.probing.params: the probed parameter groups and the last block a backbone has."""

from __future__ import annotations

import pytest
import torch

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.probing.params import distinct_params, last_block, parameter_groups
from tests.support.toy import toy_models


@pytest.fixture
def models():
    return toy_models()


def test_last_block_picks_the_last_trainable_block(models):
    backbone, _ = models
    assert last_block(backbone) == list(backbone.blocks[-1].parameters())
    backbone.blocks[-1].requires_grad_(False)
    assert last_block(backbone) == list(backbone.blocks[-2].parameters())


def test_last_block_finds_other_container_names_and_falls_back_to_children():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3))
            self.out = torch.nn.Linear(3, 1)

    net = Net()
    assert last_block(net) == list(net.layers[1].parameters())
    flat = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    flat[2].requires_grad_(False)
    # "h" would name a GPT-2 container; a bare Sequential falls back to its last trainable child
    assert last_block(flat) == list(flat[0].parameters())
    bare = torch.nn.Linear(2, 2)
    assert last_block(bare) == [bare.weight, bare.bias]
    bare.requires_grad_(False)
    with pytest.raises(EntangleValueError, match="Linear has no trainable parameters"):
        last_block(bare)


def test_parameter_groups_accepts_a_module_a_list_or_named_groups(models):
    backbone, head = models
    groups, named = parameter_groups(backbone)
    assert not named and groups["params"] == list(backbone.parameters())
    groups, named = parameter_groups([head.weight])
    assert not named and groups == {"params": [head.weight]}
    groups, named = parameter_groups({"head": head, 3: head.bias})
    assert named and groups == {"head": [head.weight, head.bias], "3": [head.bias]}
    backbone.stem.requires_grad_(False)
    kept = {id(p) for p in parameter_groups(backbone)[0]["params"]}
    assert id(backbone.stem.weight) not in kept and id(backbone.norm.weight) in kept


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({}, EntangleValueError, "dict is empty"),
        (3, EntangleTypeError, "expected a module or a sequence of parameters, got int"),
        (["w"], EntangleTypeError, "holds a str, not a parameter"),
        ([], EntangleValueError, "'params' has no trainable parameters"),
        ({"g": [torch.zeros(2)]}, EntangleValueError, "'g' holds 1 frozen parameters"),
    ],
)
def test_parameter_groups_refusals_name_the_group(params, error, match):
    with pytest.raises(error, match=match):
        parameter_groups(params)


def test_distinct_params_keeps_first_seen_order_once(models):
    backbone, head = models
    groups = {"a": [head.weight, head.bias], "b": [head.bias, backbone.stem.weight]}
    assert distinct_params(groups) == [head.weight, head.bias, backbone.stem.weight]
