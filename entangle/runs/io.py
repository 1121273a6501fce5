"""File primitives for everything entangle writes: the audited safe writes.

What the values written may be (:func:`to_jsonable`, :func:`read_jsonl`, arrays and checkpoint
contents) is entangle.runs.values'; the two JSON functions stay importable from here.

The audited write primitives (docs/reliability.md, "Symlinks") are the only code in entangle
that creates, appends to, truncates, replaces or deletes a file or folder in an output folder
(run directories, analyze/report/export output, ablation grids):

- :func:`make_dir`, :func:`open_append`, :func:`open_lock`, :func:`truncate_file`,
  :func:`remove_file`, :func:`atomic_write` (+ :func:`atomic_json`, :func:`atomic_text`),
  :func:`publish_once`, :func:`make_temp_dir`, :func:`remove_tree`, :class:`FileLock`.
- A symlink at the path written, or at the folder holding it, is refused with
  :class:`SymlinkRefused` (one line naming it). Folders are opened with ``O_NOFOLLOW`` and
  files are reached through that folder's descriptor (``dir_fd``) with ``O_NOFOLLOW``, so a
  folder swapped for a symlink between a check and a write is refused too.
- Temporary files are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under a random
  name in the target folder, then fsynced and ``os.replace``-d into place; the folder is
  fsynced after, so a reader sees the old file or the new one, never a mix.
- Files are created with mode 0o644 and folders with 0o755 (less the umask), all alike.

Reading is not restricted: a symlinked input the user named is read as usual.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.runs.values import json_text, utf8
from entangle.runs.values import read_jsonl as read_jsonl  # re-exported: a documented path
from entangle.runs.values import to_jsonable as to_jsonable  # re-exported: a documented path

_TMP_SUFFIX = ".tmp"  # every temporary file ends so; a resume removes the killed writer's
FILE_MODE = 0o644
DIR_MODE = 0o755
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# ---------------------------------------------------------------- safe writes


class SymlinkRefused(EntangleValueError):
    """A symlink where entangle must create, append, replace or delete: refused, never followed."""


def _is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def symlink_refused(path) -> SymlinkRefused:
    """The one-line error for a symlink at ``path`` where entangle must write."""
    return SymlinkRefused(
        f"{path} is a symlink; entangle never writes through a symlink (it could overwrite "
        "a file elsewhere): remove the link or choose another output folder"
    )


def refuse_symlink(path) -> None:
    """Raise :class:`SymlinkRefused` when ``path`` itself is a symlink (its target is not read)."""
    if _is_symlink(Path(path)):
        raise symlink_refused(path)


def _open_dir(folder: Path) -> int:
    """A descriptor of ``folder``, refusing a symlink there (``O_NOFOLLOW``)."""
    try:
        return os.open(folder, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if _is_symlink(folder):
            raise symlink_refused(folder) from None
        raise write_error(folder, exc) from None


def _open_in(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """Open ``path`` through its folder's descriptor with ``O_NOFOLLOW``; a regular file only."""
    path = Path(path)
    dfd = _open_dir(path.parent)
    try:
        try:
            fd = os.open(path.name, flags | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dfd)
        except OSError as exc:
            if _is_symlink(path):
                raise symlink_refused(path) from None
            raise write_error(path, exc) from None
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise EntangleValueError(
            f"{path} is not a regular file (a FIFO, device or folder?); entangle writes only "
            "regular files there: remove it or choose another output folder"
        )
    return fd


def make_dir(path, *, parents: bool = True, what: str = "folder") -> Path:
    """Create folder ``path`` (mode 0o755) or accept an existing one; never a symlink.

    ``parents`` creates missing parents as ``mkdir -p`` does; parents that already exist may
    be symlinks (the user named that location), the folder itself may not. ``what`` names
    the folder in the error ("cannot create the run directory ...").

    Raises:
        SymlinkRefused: ``path`` is a symlink.
        EntangleValueError: a file is in the way, or the folder cannot be created.
    """
    path = Path(path)
    refuse_symlink(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise EntangleValueError(
            f"cannot create the {what} {path} ({exc.strerror or exc}); choose another, "
            "writable location"
        ) from None
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):  # planted between the check and mkdir
        raise symlink_refused(path)
    if not stat.S_ISDIR(st.st_mode):
        raise EntangleValueError(f"{path} exists and is a file, not a folder; choose another path")
    return path


def open_append(path):
    """``path`` opened for appending bytes (created 0o644 when missing); never via a symlink."""
    return os.fdopen(_open_in(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


def open_lock(path) -> int:
    """A read/write descriptor of lock file ``path`` (created 0o644); never via a symlink."""
    return _open_in(path, os.O_RDWR | os.O_CREAT)


def truncate_file(path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and fsync it; never via a symlink."""
    fd = _open_in(path, os.O_RDWR)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path, *, missing_ok: bool = True) -> None:
    """Delete file ``path``; a symlink there is refused (it was not entangle's to remove)."""
    path = Path(path)
    refuse_symlink(path)
    dfd = _open_dir(path.parent)
    try:
        os.unlink(path.name, dir_fd=dfd)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        os.close(dfd)


def _fsync_fd(fd: int) -> None:
    # makes a rename durable; not possible on every platform, and not essential
    try:
        os.fsync(fd)
    except OSError:
        pass


def write_error(path: Path, exc: BaseException) -> EntangleRuntimeError:
    """One line for a failed write: the file, the cause, and that rerunning resumes."""
    detail = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120] or type(exc).__name__
    return EntangleRuntimeError(
        f"cannot write {path} ({detail}): the disk may be full or not writable; free space "
        "and rerun the same command to resume (the previous file, if any, is intact)"
    )


def _temp_in(dfd: int, name: str) -> tuple[str, int]:
    """Create a fresh temporary file in the folder ``dfd`` exclusively: ``(name, fd)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    while True:
        tmp = f".{name}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        try:
            return tmp, os.open(tmp, flags, FILE_MODE, dir_fd=dfd)
        except FileExistsError:
            continue


def _write_temp(path: Path, dfd: int, write) -> str:
    tmp, fd = _temp_in(dfd, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink_quiet(tmp, dfd)
        raise
    return tmp


def _unlink_quiet(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def atomic_write(path, write) -> Path:
    """Write ``path`` (mode 0o644) through an exclusive temporary sibling and ``os.replace``.

    Args:
        path: the file; a symlink there, or at its folder, is refused.
        write: called with the open binary file object.

    Raises:
        SymlinkRefused: a symlink at ``path`` or its folder.
        EntangleRuntimeError: the write failed (disk full, ...): one line; the old file stays.
    """
    path = Path(path)
    refuse_symlink(path)
    dfd = _open_dir(path.parent)
    try:
        try:
            tmp = _write_temp(path, dfd, write)
        except (OSError, RuntimeError) as exc:  # disk full: torch.save says "unexpected pos"
            raise write_error(path, exc) from None
        try:
            if _is_symlink(path):  # planted while we wrote
                raise symlink_refused(path)
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            raise write_error(path, exc) from None
        finally:
            _unlink_quiet(tmp, dfd)
        _fsync_fd(dfd)
    finally:
        os.close(dfd)
    return path


def atomic_json(path, obj: dict) -> Path:
    """:func:`atomic_write` of ``obj`` as indented JSON (NaN/inf as null)."""
    text = json_text(obj) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_text(path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text file (see :func:`entangle.runs.values.utf8`)."""
    data = utf8(text)
    return atomic_write(path, lambda fh: fh.write(data))


def publish_once(path, write) -> bool:
    """Write ``path`` unless it exists (first writer wins); True when this call wrote it.

    The file is written to an exclusive temporary name and hard-linked into place, which
    fails when another process published first, so it appears complete or not at all.
    """
    path = Path(path)
    refuse_symlink(path)
    dfd = _open_dir(path.parent)
    try:
        try:
            tmp = _write_temp(path, dfd, write)
        except (OSError, RuntimeError) as exc:
            raise write_error(path, exc) from None
        try:
            os.link(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            return True
        except FileExistsError:
            refuse_symlink(path)
            return False
        except OSError:  # no hard links on this file system
            if os.path.lexists(path):
                refuse_symlink(path)
                return False
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return True
        finally:
            _unlink_quiet(tmp, dfd)
            _fsync_fd(dfd)
    finally:
        os.close(dfd)


def make_temp_dir(parent, prefix: str) -> Path:
    """A fresh folder ``parent/PREFIX<random>`` (``mkdtemp``: exclusive, 0o700); never a link."""
    parent = Path(parent)
    refuse_symlink(parent)
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise write_error(parent / prefix, exc) from None


def remove_tree(path) -> None:
    """Delete folder ``path`` and what it holds; symlinks inside are removed, never followed.

    A symlink at ``path`` itself is refused.
    """
    path = Path(path)
    refuse_symlink(path)
    shutil.rmtree(path, ignore_errors=True)


def drop_torn_tail(path) -> int:
    """Cut an unterminated last line off ``path``; return the number of bytes removed."""
    path = Path(path)
    if not os.path.lexists(path):
        return 0
    refuse_symlink(path)
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    truncate_file(path, keep)
    return len(data) - keep


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created 0o644, never via a symlink).

    The kernel drops the lock when the holder dies. ``blocking=False`` raises
    ``BlockingIOError`` when another process holds it. Without ``fcntl`` (Windows) nothing is
    locked and :attr:`fd` is still open. Use as a context manager or call :meth:`release`.
    """

    def __init__(self, path, *, blocking: bool = True):
        self.path = Path(path)
        self.fd: int | None = open_lock(self.path)
        try:
            import fcntl
        except ModuleNotFoundError:  # Windows: no flock
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    def release(self) -> None:
        """Unlock (closing the descriptor drops the flock); idempotent."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def lock_folder(folder):
    """Hold an exclusive ``flock`` on folder ``folder`` itself (no lock file is left behind).

    Serialises writers that build a sibling of ``folder``'s entries (report and export
    output), so temporary folders found while holding it are stale ones of killed processes.
    """
    folder = Path(folder)
    fd = _open_dir(folder)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ModuleNotFoundError:  # Windows: no flock
            pass
        yield
    finally:
        os.close(fd)  # drops the flock


def remove_stale_temp_dirs(parent, prefix: str) -> list[str]:
    """Delete folders ``parent/PREFIX*`` that a killed writer left; return their names.

    Call only while holding :func:`lock_folder` on ``parent`` (no live writer has one then).
    Symlinks and files with that prefix are left alone.
    """
    parent = Path(parent)
    removed = []
    for entry in sorted(os.scandir(parent), key=lambda e: e.name):
        if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def replace_dir(new, out, *, old_prefix: str) -> None:
    """Move folder ``new`` to ``out``; an existing ``out`` is swapped out, then deleted.

    ``out`` is never a symlink (refused); when the second rename fails the previous ``out``
    is put back.
    """
    new, out = Path(new), Path(out)
    refuse_symlink(out)
    if not os.path.lexists(out):
        os.replace(new, out)
        return
    old = make_temp_dir(out.parent, old_prefix)
    os.rmdir(old)  # a unique name that os.replace may take
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
