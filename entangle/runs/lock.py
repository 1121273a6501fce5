"""One writer per run directory: an exclusive lock that names its holder.

``RUN/.writer.lock`` is held with ``fcntl.flock`` (:class:`entangle.runs.io.FileLock`, which
refuses a symlink there) for as long as a :class:`RunLock` is
acquired, and holds ``{"pid", "host", "time"}`` of the holder. The kernel drops the lock
when the holder dies, so a lock file whose flock is free but still names a holder is the
stale lock of a process that was killed: it is taken over and the takeover is returned to be
noted. The file is never deleted (a deleted lock file would let two writers lock two
different files). See docs/reliability.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from entangle.errors import EntangleRuntimeError
from entangle.runs.io import FileLock

LOCK_NAME = ".writer.lock"


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        info = {"unreadable": raw[:80].decode("utf-8", "replace")}
    return info if isinstance(info, dict) else {}


def pid_alive(pid) -> bool:
    """Whether a process with this id runs on this machine (False for junk)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """Exclusive, non-blocking lock on a run directory.

    Args:
        folder: the run directory (must exist).

    Attributes:
        taken_over: the stale holder's ``{"pid", "host", "time"}`` when :meth:`acquire` took
            over the lock of a dead process, else None.
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self._flock: FileLock | None = None
        self.taken_over: dict | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise.

        Raises:
            EntangleRuntimeError: another live process writes this run (its PID is named).
        """
        try:
            self._flock = FileLock(self.path, blocking=False)
        except BlockingIOError:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            info = _holder(fd)
            os.close(fd)
            who = f"PID {info.get('pid', '?')} on {info.get('host', '?')}"
            raise EntangleRuntimeError(
                f"{self.path.parent} is being written by another process ({who}, since "
                f"{info.get('time', '?')}); wait for it to finish or stop it, or choose "
                "another run directory"
            ) from None
        fd = self._flock.fd
        previous = _holder(fd)
        if previous:
            previous["alive"] = pid_alive(previous.get("pid"))
            self.taken_over = previous
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the lock file (no holder) and unlock it; idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            self._flock.release()  # closing the descriptor drops the flock
