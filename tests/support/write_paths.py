"""Print every path entangle writes, command by command, as the symlink test records them.

    PYTHONPATH=. python -m tests.support.write_paths [SCENARIO ...]

Runs each scenario of tests/runs/test_io_write_paths.py once, with the recorder around the
write primitives of entangle.runs.io (issue 19), and prints the list docs/reliability.md
carries ("The write paths the symlink test covers"): one line per command, each path relative
to the folder the command runs in, folders ending in ``/``. That test checks the list in the
docs against what it records, so a new write path fails it until the docs name it.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import types
from pathlib import Path


class _Stderr:
    """What the test's ``capsys`` gives the recorder: the command's stderr, read once."""

    def __init__(self):
        self.buffer = io.StringIO()

    def readouterr(self):
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return types.SimpleNamespace(out="", err=text)


def main(argv: list[str]) -> int:
    from tests.runs import test_io_write_paths as paths

    names = argv or list(paths.SCENARIOS)
    total = 0
    for name in names:
        stderr = _Stderr()
        started = time.perf_counter()
        quiet = contextlib.redirect_stdout(io.StringIO())
        with tempfile.TemporaryDirectory(prefix="entangle-write-paths-") as tmp:
            with contextlib.redirect_stderr(stderr.buffer), quiet:
                recorded = paths._write_paths(name, Path(tmp), stderr)
        seconds = time.perf_counter() - started
        total += len(recorded)
        print(f"{paths.docs_line(name, recorded)}  <!-- {seconds:.1f} s -->")
    print(f"{total} write paths in {len(names)} commands")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
