"""Damaged and crafted checkpoint files end in one CheckpointError, never another exception."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given

from entangle.checkpoints.safe import CheckpointError, safe_load

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from bombs import fuzz_settings, mutated  # noqa: E402


def _checkpoint_bytes(legacy: bool) -> bytes:
    buf = io.BytesIO()
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}, "epoch": 3}
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


ZIP, LEGACY = _checkpoint_bytes(False), _checkpoint_bytes(True)


@fuzz_settings()
@given(data=mutated(ZIP, LEGACY))
def test_a_mutated_checkpoint_loads_or_is_one_checkpoint_error(tmp_path, data):
    """Bytes overwritten anywhere (central directory and sizes included) and a truncated
    tail: the file loads or is refused as a CheckpointError with a one-line message."""
    path = tmp_path / "c.pt"
    path.write_bytes(data)
    try:
        safe_load(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)


def test_the_unmutated_files_load(tmp_path):
    for name, data in (("zip.pt", ZIP), ("legacy.pt", LEGACY)):
        (tmp_path / name).write_bytes(data)
        assert safe_load(tmp_path / name)["epoch"] == 3


def test_an_end_record_zipfile_cannot_parse_is_one_checkpoint_error(tmp_path):
    """``zipfile.is_zipfile`` itself raised BadZipFile (a traceback) for a zip64 locator that
    names a second disk; found by fuzzing."""
    data = bytearray(ZIP)
    locator = data.rfind(b"PK\x06\x07")
    assert locator > 0  # torch writes zip64 records
    data[locator + 4] = 1  # the disk holding the zip64 end record
    (tmp_path / "c.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt.*span multiple disks"):
        safe_load(tmp_path / "c.pt")


def test_a_stride_0_view_is_measured_by_what_it_describes(tmp_path, monkeypatch):
    """torch.zeros(1).expand(65536, 65536) stores 4 bytes in a 1.6 KB file but is 16 GiB to
    anything that copies it (torch.cat, .contiguous(), a dtype change)."""
    from entangle.checkpoints.safe import tensor_bytes

    path = tmp_path / "c.pt"
    torch.save({"model": {"w": torch.zeros(1).expand(1 << 16, 1 << 16)}}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"tensors describe 16\.0 GiB.*CHECKPOINT_BYTES=N"):
        safe_load(path)
    shared = torch.ones(3)
    loop: list = [shared, {"again": shared}]
    loop.append(loop)  # a pickle may refer to itself; each object counts once
    assert tensor_bytes({"a": loop, "b": (torch.ones(2, dtype=torch.float64),)}) == 12 + 16
    monkeypatch.setenv("ENTANGLE_MAX_CHECKPOINT_BYTES", "17G")
    assert safe_load(path)["model"]["w"].shape == (1 << 16, 1 << 16)
