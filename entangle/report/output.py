"""Atomic report folders: render into a temporary sibling, then swap it into place.

A marker file tells entangle reports apart from other folders, so a report may replace an
older report but never a directory that holds something else. Writers of one output folder
are serialised by a lock on its parent folder; temporary folders a killed report left
(``.NAME.tmp-XXXX``) are removed by the next report to the same place. The file primitives
are :mod:`entangle.runs.io`'s: a symlinked output folder is refused, never followed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.runs.io import (
    lock_folder,
    make_temp_dir,
    remove_stale_temp_dirs,
    remove_tree,
    replace_dir,
    symlink_refused,
    write_error,
)

MARKER = ".entangle-report"


def is_report_dir(path: Path) -> bool:
    """True when ``path`` is a folder written by :func:`entangle.report.build_report`."""
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def check_target(out: Path, *, kind: str = "report", marker: str = MARKER) -> None:
    """Raise unless ``out`` is free, an empty folder, or an earlier entangle output of ``kind``."""
    if out.is_symlink():
        raise symlink_refused(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise EntangleValueError(
            f"{kind} output {out} exists and is a file, not a folder; choose another --out path"
        )
    if (out / marker).is_file() or not any(out.iterdir()):
        return
    raise EntangleValueError(
        f"{kind} output {out} is a non-empty folder that is not an entangle {kind} (no "
        f"{marker} file); refusing to replace it: choose a new or empty --out folder"
    )


@contextlib.contextmanager
def atomic_output_dir(out: Path, *, kind: str, marker: str, generator: str):
    """Yield a fresh private folder next to ``out``; on success it replaces ``out``.

    The old output stays in place until the new one is complete; on an exception the
    temporary folder is removed and ``out`` is left as it was. A failed write (a full disk)
    ends in one line naming ``out``.
    """
    out = Path(out)
    check_target(out, kind=kind, marker=marker)
    try:  # the parents of the folder the user named may be anything they chose
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from None
    with lock_folder(out.parent):
        remove_stale_temp_dirs(out.parent, f".{out.name}.tmp-")
        remove_stale_temp_dirs(out.parent, f".{out.name}.old-")
        tmp = make_temp_dir(out.parent, f".{out.name}.tmp-")
        try:
            yield tmp
            (tmp / marker).write_text(json.dumps({"generator": generator}) + "\n", "utf-8")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the output is meant to be shared
            # checked again: another process may have created the folder while we rendered
            check_target(out, kind=kind, marker=marker)
            replace_dir(tmp, out, old_prefix=f".{out.name}.old-")
        except OSError as exc:  # a full disk, a read-only place: one line
            remove_tree(tmp)
            raise write_error(out, exc) from None
        except BaseException:
            remove_tree(tmp)
            raise


def atomic_report_dir(out: Path, *, generator: str):
    """:func:`atomic_output_dir` for an HTML report (marker :data:`MARKER`)."""
    return atomic_output_dir(out, kind="report", marker=MARKER, generator=generator)
