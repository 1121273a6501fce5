"""File names decoded under a non-UTF-8 locale read and write as UTF-8; the one JSON encoder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from entangle.runs.values import dumps_record, json_text, readable, utf8


def test_file_names_python_could_not_decode_are_written_as_utf8():
    """Under LC_ALL=C PYTHONUTF8=0 "mödel.pt" arrives as lone surrogates (issue 19)."""
    assert readable("m\udcc3\udcb6del.pt") == "mödel.pt"  # UTF-8 bytes: the name as typed
    assert readable("caf\udce9") == "caf\ufffd"  # a Latin-1 byte: the replacement character
    assert readable("a\ud800b") == "a\ufffd\ufffd\ufffdb"  # no file-name byte makes this one
    assert readable("plain ü") == "plain ü"
    assert utf8("m\udcc3\udcb6del").decode("utf-8") == "mödel"


def _strict(text: str):
    """``text`` parsed as strict JSON: ``NaN`` / ``Infinity`` (what json.dumps writes) refused."""

    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_text_writes_nan_and_infinities_as_null_valid_json():
    value = {"soc": math.nan, "ratio": math.inf, "low": -math.inf, "x": np.float32("nan")}
    value |= {"t": torch.tensor([1.0, math.nan]), "ok": 0.5, "n": 3}
    with pytest.raises(ValueError, match="NaN"):
        _strict(json.dumps({"soc": math.nan}))  # the failure json_text exists to avoid
    want = {"soc": None, "ratio": None, "low": None, "x": None, "t": [1.0, None], "ok": 0.5}
    assert _strict(json_text(value)) == want | {"n": 3}
    assert json_text({"a": [1, 2]}) == '{\n  "a": [\n    1,\n    2\n  ]\n}'  # indented by 2
    # a record line is the same encoder, compact
    assert dumps_record({"soc": math.nan, "k": [1, 2]}) == '{"soc":null,"k":[1,2]}'
