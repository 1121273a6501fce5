"""File names decoded under a non-UTF-8 locale read and write as UTF-8."""

from __future__ import annotations

from entangle.runs.values import readable, utf8


def test_file_names_python_could_not_decode_are_written_as_utf8():
    """Under LC_ALL=C PYTHONUTF8=0 "mödel.pt" arrives as lone surrogates (issue 19)."""
    assert readable("m\udcc3\udcb6del.pt") == "mödel.pt"  # UTF-8 bytes: the name as typed
    assert readable("caf\udce9") == "caf\ufffd"  # a Latin-1 byte: the replacement character
    assert readable("a\ud800b") == "a\ufffd\ufffd\ufffdb"  # no file-name byte makes this one
    assert readable("plain ü") == "plain ü"
    assert utf8("m\udcc3\udcb6del").decode("utf-8") == "mödel"
