"""One writer per run directory: a live holder refuses, a dead one's lock is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from entangle.errors import EntangleRuntimeError
from entangle.runs.directory import RunReader, RunWriter
from entangle.runs.lock import LOCK_NAME, RunLock, pid_alive


def test_a_second_writer_is_refused_and_told_the_holder(tmp_path):
    with RunWriter(tmp_path / "run", seed=0):
        with pytest.raises(EntangleRuntimeError, match=rf"another process \(PID {os.getpid()}"):
            RunWriter(tmp_path / "run", seed=0, resume=True)
    # released on close: the run can be resumed
    with RunWriter(tmp_path / "run", resume=True) as again:
        again.finish({})


def test_a_writer_in_another_process_is_refused(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from entangle.runs.directory import RunWriter; "
            "w = RunWriter(sys.argv[1], seed=0); print('held', flush=True); time.sleep(60)",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EntangleRuntimeError, match=f"PID {holder.pid}"):
            RunWriter(tmp_path / "run", resume=True)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the kernel dropped the dead holder's flock: its stale lock is taken over and noted
    with RunWriter(tmp_path / "run", resume=True) as run:
        run.finish({})
    (entry,) = RunReader(tmp_path / "run").meta["resumed_at"]
    assert entry["took_over_lock_of"]["pid"] == holder.pid
    assert entry["took_over_lock_of"]["alive"] is False


def test_a_stale_lock_file_on_a_new_run_is_noted(tmp_path):
    (tmp_path / "run").mkdir()
    stale = {"pid": 999999999, "host": "elsewhere", "time": "2026-01-01T00:00:00+00:00"}
    (tmp_path / "run" / LOCK_NAME).write_text(json.dumps(stale))
    with RunWriter(tmp_path / "run", seed=0) as run:
        run.finish({})
    assert RunReader(tmp_path / "run").meta["lock_taken_over"]["pid"] == 999999999
    assert (tmp_path / "run" / LOCK_NAME).read_text() == ""  # released: no holder


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(999999999) and not pid_alive("12") and not pid_alive(True)


def test_release_is_idempotent(tmp_path):
    lock = RunLock(tmp_path).acquire()
    lock.release()
    lock.release()
    RunLock(tmp_path).acquire().release()
