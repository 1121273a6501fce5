"""Atomic report folders: render into a temporary sibling, then swap it into place.

A marker file tells entangle reports apart from other folders, so a report may replace an
older report but never a directory that holds something else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from entangle.errors import EntangleValueError

MARKER = ".entangle-report"


def is_report_dir(path: Path) -> bool:
    """True when ``path`` is a folder written by :func:`entangle.report.build_report`."""
    return path.is_dir() and (path / MARKER).is_file()


def check_target(out: Path) -> None:
    """Raise unless ``out`` is free, an empty folder, or an earlier entangle report."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise EntangleValueError(
            f"report output {out} exists and is not a folder; choose another --out path"
        )
    if is_report_dir(out) or not any(out.iterdir()):
        return
    raise EntangleValueError(
        f"report output {out} is a non-empty folder that is not an entangle report (no "
        f"{MARKER} file); refusing to replace it: choose a new or empty --out folder"
    )


@contextlib.contextmanager
def atomic_report_dir(out: Path, *, generator: str):
    """Yield a temporary folder next to ``out``; on success it replaces ``out``.

    The old report stays in place until the new one is complete; on an exception the
    temporary folder is removed and ``out`` is left as it was.
    """
    out = Path(out)
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"generator": generator}) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a report is meant to be shared
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    # checked again: another process may have created the folder while we rendered
    check_target(out)
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)
