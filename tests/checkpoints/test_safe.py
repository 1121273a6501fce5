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
