"""Report folders: stale temp folders of a killed report are removed; a full disk is one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.report.output import MARKER, atomic_report_dir


def test_stale_temp_folder_of_a_killed_report_is_removed(tmp_path):
    out = tmp_path / "rep"
    stale = tmp_path / ".rep.tmp-abcd1234"  # what a SIGKILL mid-render leaves
    stale.mkdir()
    (stale / "fig.png").write_bytes(b"x")
    with atomic_report_dir(out, generator="test") as tmp:
        (tmp / "index.html").write_text("ok")
    assert not stale.exists()
    assert (out / MARKER).is_file() and (out / "index.html").read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_full_disk_ends_in_one_line(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(EntangleRuntimeError) as err:
        with atomic_report_dir(tmp_path / "rep", generator="test") as tmp:
            (tmp / "index.html").write_text("ok")
    assert "\n" not in str(err.value) and "No space left" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_symlinked_out_is_called_a_symlink(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "rep")
    with pytest.raises(EntangleValueError, match="is a symlink"):
        with atomic_report_dir(tmp_path / "rep", generator="test"):
            pass
    assert list((tmp_path / "elsewhere").iterdir()) == []
