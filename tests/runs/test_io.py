"""Safe write primitives: a symlink planted where entangle writes is refused; no victim changes."""

from __future__ import annotations

import os

import pytest

from entangle.errors import EntangleValueError
from entangle.runs.directory import RunWriter
from entangle.runs.io import SymlinkRefused, atomic_json
from entangle.runs.lock import LOCK_NAME


def _victim(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious line\n")
    return victim


# (relative path in a fresh run folder where a symlink is planted, target kind)
FRESH_RUN_PATHS = [LOCK_NAME, "run.json", "steps.jsonl", "epochs.jsonl", "features", "checkpoints"]


@pytest.mark.parametrize("rel", FRESH_RUN_PATHS)
def test_fresh_run_refuses_a_planted_symlink(tmp_path, rel):
    victim = _victim(tmp_path)
    victim_dir = tmp_path / "victim_dir"
    victim_dir.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    is_dir = rel in ("features", "checkpoints")
    os.symlink(victim_dir if is_dir else victim, run / rel)
    # owned names are refused before any write ("already contains"), the others as symlinks
    with pytest.raises(EntangleValueError) as err:
        with RunWriter(run, config={}, seed=0) as w:
            w.save_checkpoint("model", {"x": 1})
    message = str(err.value)
    assert "\n" not in message and (str(run / rel) in message or rel in message)
    assert victim.read_bytes() == b"precious line\n"
    assert list(victim_dir.iterdir()) == []


@pytest.mark.parametrize("rel", ["steps.jsonl", "epochs.jsonl", "checkpoints", "STOPPED"])
def test_resume_refuses_a_planted_symlink(tmp_path, rel):
    run = tmp_path / "run"
    with RunWriter(run, config={}, seed=0) as w:
        w.write_step({"step": 0})
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"one line without end")
    target = run / rel
    if target.is_dir():
        os.rename(target, tmp_path / "moved")
        os.symlink(tmp_path / "moved", target)
    else:
        target.unlink(missing_ok=True)
        os.symlink(victim, target)
    with pytest.raises(SymlinkRefused):
        with RunWriter(run, resume=True) as w:
            w.write_step({"step": 1})
            w.save_checkpoint("last", {"x": 1})
    assert victim.read_bytes() == b"one line without end"
    if rel == "checkpoints":
        assert list((tmp_path / "moved").iterdir()) == []


def test_atomic_json_file_mode_is_0644_and_refuses_link(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_json(tmp_path / "a.json", {"k": 1})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    os.symlink(path, tmp_path / "b.json")
    with pytest.raises(SymlinkRefused):
        atomic_json(tmp_path / "b.json", {"k": 2})
    assert path.read_text().count('"k": 1') == 1
