"""save_checkpoint: atomic replacement, checked metadata, a full disk in one line."""

from __future__ import annotations

import pytest
import torch

from entangle.checkpoints import (
    safe_load,
    save_checkpoint,
)
from entangle.errors import EntangleTypeError


def test_entangle_save_replaces_atomically_and_checks_meta(tmp_path, vit, head):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, vit, head, {"note": "first"})
    with pytest.raises(EntangleTypeError, match="meta.bad"):
        save_checkpoint(path, vit, head, {"bad": object()})
    assert safe_load(path)["meta"]["note"] == "first"  # the failed save left it intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_a_full_disk_while_saving_is_one_clear_line(tmp_path, monkeypatch, vit):
    from entangle.errors import EntangleRuntimeError

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    save_checkpoint(tmp_path / "m.pt", vit, None)
    before = (tmp_path / "m.pt").read_bytes()
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(EntangleRuntimeError, match=r"cannot write .*m\.pt.*disk may be full"):
        save_checkpoint(tmp_path / "m.pt", vit, None)
    assert (tmp_path / "m.pt").read_bytes() == before  # the previous file is intact
    assert not list(tmp_path.glob("*.tmp"))
