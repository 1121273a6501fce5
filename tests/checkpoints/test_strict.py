"""Strict loading: every missing, unexpected and mis-shaped key in one error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from entangle.checkpoints import (
    CheckpointError,
    load_gcd_checkpoint,
)


def test_missing_and_unexpected_keys_are_listed_with_the_format(tmp_path, vit, head):
    state = nn.Sequential(vit, head).state_dict()
    del state["0.blocks.2.norm1.weight"]
    state["0.blocks.2.extra"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as info:
        load_gcd_checkpoint(tmp_path / "c.pt")
    message = str(info.value)
    assert "simgcd layout" in message
    assert "missing keys (1): blocks.2.norm1.weight" in message
    assert "unexpected keys (1): blocks.2.extra" in message


def test_shape_mismatch_is_a_checkpoint_error(tmp_path, vit, head):
    state = nn.Sequential(vit, head).state_dict()
    state["0.blocks.1.attn.qkv.weight"] = torch.zeros(10, 64)
    torch.save({"model": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.qkv\.weight: file \(10, 64\)"):
        load_gcd_checkpoint(tmp_path / "c.pt")
