"""Reading untrusted files and names without running anything from them."""

from __future__ import annotations

import io
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given

from entangle.errors import EntangleValueError
from entangle.runs.untrusted import (
    MAX_COMPONENT,
    load_npz,
    npz_object_arrays,
    pickle_globals,
    safe_name,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from bombs import fuzz_settings, mutated  # noqa: E402


class Call:
    def __reduce__(self):
        return (print, ("hello",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_globals_names_global_and_stack_global_without_unpickling(protocol):
    data = pickle.dumps({"a": Call(), "b": OrderedDict()}, protocol=protocol)
    assert pickle_globals(io.BytesIO(data)) == ["builtins.print", "collections.OrderedDict"]


def test_pickle_globals_reads_the_pickles_of_a_legacy_torch_file():
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2), "x": Call()}, buffer, _use_new_zipfile_serialization=False)
    names = pickle_globals(io.BytesIO(buffer.getvalue()))
    assert "builtins.print" in names and "torch._utils._rebuild_tensor_v2" in names


def test_pickle_globals_of_bytes_that_are_no_pickle_is_empty():
    assert pickle_globals(io.BytesIO(b"\xff\x00not a pickle")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("..", "run"),
        (".", "run"),
        ("", "run"),
        ("...", "run"),
        (".hidden", "hidden"),
        ("a/b", "a_b"),
        ("../../etc", "_.._etc"),
        ("model-3.v2", "model-3.v2"),
        ("é x", "é_x"),
    ],
)
def test_safe_name_is_one_harmless_component(text, expected):
    assert safe_name(text) == expected


def test_safe_name_cuts_long_names_and_keeps_them_apart():
    a, b = safe_name("x" * 300 + "a"), safe_name("x" * 300 + "b")
    assert len(a) == MAX_COMPONENT and a != b


def test_object_arrays_are_named_and_refused(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, ok=np.ones(3), names=np.array([Call()], dtype=object))
    assert npz_object_arrays(path) == ["names"]
    with pytest.raises(EntangleValueError, match="names hold Python objects"):
        load_npz(path)


@pytest.mark.parametrize("damage", ["truncate", "directory", "text"])
def test_unreadable_npz_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "f.npz"
    np.savez(path, a=np.ones(100))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:50])
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text("hello")
    with pytest.raises(EntangleValueError, match="is not a readable .npz file"):
        load_npz(path)


def _npz_bytes(compressed: bool) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, features=np.ones((5, 3), np.float32), labels=np.arange(5), labeled=np.ones(5, bool))
    return buf.getvalue()


NPZ_FILES = (_npz_bytes(False), _npz_bytes(True))


@fuzz_settings()
@given(data=mutated(*NPZ_FILES))
def test_a_mutated_npz_loads_or_is_one_line(tmp_path, data):
    """Bytes overwritten anywhere (headers, sizes, central directory) and a truncated tail:
    the arrays load or the file is refused with a one-line EntangleValueError."""
    path = tmp_path / "f.npz"
    path.write_bytes(data)
    try:
        load_npz(path)
    except EntangleValueError as exc:
        assert "\n" not in str(exc)
