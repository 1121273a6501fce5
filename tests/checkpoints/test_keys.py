"""The key helpers the layouts share: prefixes, sub-dicts, plain metadata, a ViT state inside a
DINO / DINOv2 weights object."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.checkpoints import CheckpointError
from entangle.checkpoints.keys import (
    backbone_state_from,
    is_vit_state,
    plain_meta,
    str_keyed,
    strip,
    sub,
    unwrap,
)

ONE = torch.ones(1)


def test_strip_removes_a_prefix_only_where_it_starts_the_key():
    state = {"module.a": 1, "b.module.c": 2, "module.module.d": 3}
    assert strip(state, "module.") == {"a": 1, "b.module.c": 2, "module.d": 3}


def test_sub_keeps_only_the_entries_under_the_prefix():
    state = {"0.w": 1, "0.b": 2, "1.w": 3, "10.w": 4}
    assert sub(state, "1.") == {"w": 3} and sub(state, "0.") == {"w": 1, "b": 2}
    assert sub(state, "2.") == {}


def test_a_state_dict_is_a_non_empty_string_keyed_mapping():
    assert str_keyed({"w": ONE}) and not str_keyed({}) and not str_keyed({1: ONE})
    assert not str_keyed([("w", ONE)])


def test_unwrap_strips_ddps_prefix_and_notes_it():
    notes: list[str] = []
    assert unwrap({"module.w": ONE}, "backbone", "eagc", notes) == {"w": ONE}
    assert notes == ["backbone: stripped the 'module.' prefix (distributed training)"]
    assert unwrap({"w": ONE}, "head", "eagc", notes) == {"w": ONE} and len(notes) == 1
    with pytest.raises(CheckpointError, match="eagc checkpoint: head is not a state dict"):
        unwrap(["w"], "head", "eagc", notes)


def test_plain_meta_keeps_numbers_and_strings_and_unwraps_scalars():
    obj = {
        "epoch": np.int64(4),
        "acc": np.float64(0.5),
        "best": torch.tensor([0.25]),
        "name": "run",
        "args": object(),
        "hist": torch.ones(3),
    }
    meta = plain_meta(obj, ("epoch", "acc", "best", "name", "args", "hist", "missing"))
    assert meta == {"epoch": 4, "acc": 0.5, "best": 0.25, "name": "run"}
    assert type(meta["epoch"]) is int and type(meta["acc"]) is float


def test_is_vit_state_needs_the_three_keys_every_vit_has():
    vit = {"cls_token": ONE, "pos_embed": ONE, "patch_embed.proj.weight": ONE}
    assert is_vit_state(vit) and is_vit_state(vit | {"x": ONE})
    assert not is_vit_state({"cls_token": ONE, "pos_embed": ONE})


def test_the_backbone_inside_a_dino_or_dinov2_object():
    vit = {"cls_token": ONE, "pos_embed": ONE, "reg_token": ONE}
    teacher = {f"module.backbone.{k}": v for k, v in vit.items()} | {"module.head.w": ONE}
    want = {"cls_token": ONE, "pos_embed": ONE, "register_tokens": ONE}
    assert backbone_state_from({"teacher": teacher, "epoch": 3}) == want
    assert backbone_state_from({"state_dict": vit}) == want
    assert backbone_state_from(vit | {"head": ONE}) == want
    # a plain ViT state dict that happens to hold a 'model' entry is read as it is
    assert backbone_state_from(vit | {"model": {"w": ONE}})["model"] == {"w": ONE}
    with pytest.raises(CheckpointError, match="expected a state dict .* got list"):
        backbone_state_from([1, 2])
