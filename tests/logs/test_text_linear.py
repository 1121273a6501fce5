"""Parsing a log line costs time linear in its length, whatever the line holds (issue 19).

Before the fix a line "TIME - " + N spaces took 2.7 / 20.8 / 164 s for N = 1000 / 2000 / 4000
(cubic), and a run of digits or a long word in a step line's tail was quadratic. Python's re
exposes no step count, so each case compares the parse cost of the same hostile shape at two
lengths 8x apart in one process: a linear parser costs ~8x, a quadratic one ~64x, a cubic one
~512x. The bound (24x) is three times the linear ratio; each cost is the fastest of several
repeats, timed on the process's own CPU clock (time spent descheduled on a busy machine is not
counted), so a busy machine cannot make a linear parser look quadratic.
"""

from __future__ import annotations

import time

import pytest

from entangle.logs.text import TextLog, _Parser, strip_prefix

SHORT, FACTOR = 200, 8

# each shape builds a hostile line of about n characters
SHAPES = {
    "logging time then spaces": lambda n: "2024-01-01 00:00:00,000 - " + " " * n,
    "logging time then separators": lambda n: "2024-01-01 00:00:00,000 - " + "- " * (n // 2),
    "loguru prefix then one long token": lambda n: "2024-01-01 00:00:00.000 | INFO | " + "a" * n,
    "step line with a long digit run": lambda n: "Epoch: [1][1/2]\t loss " + "1" * n + "x",
    "step line with a long word": lambda n: "Epoch: [1][1/2]\t " + "a" * n + " 1",
    "step line with many short words": lambda n: "Epoch: [1][1/2] a: 1 " + "ab " * (n // 3),
    "step line with many pairs": lambda n: "Epoch: [1][1/2]" + " a: 1" * (n // 5) + " x",
    "accuracy line with a long number": lambda n: "Train Accuracies: All " + "1" * n + "x",
    "protocol line with many underscores": lambda n: "Epoch 1, " + "a_" * (n // 2) + ": All",
    "average line with many bars": lambda n: "Epoch: 1 Avg Loss: 1 " + "| a " * (n // 4) + "|",
}


def _parse(line: str) -> None:
    msg, stamp = strip_prefix(line)
    _Parser(TextLog("x")).line(msg, stamp)


def _cost(line: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeats):
            _parse(line)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_parse_cost_grows_linearly_with_line_length(shape):
    make = SHAPES[shape]
    short, long = make(SHORT), make(SHORT * FACTOR)
    # enough repeats that the short line's cost is well above the clock's resolution
    repeats = 50
    ratio = _cost(long, repeats) / _cost(short, repeats)
    assert ratio < 3 * FACTOR, f"{shape}: {FACTOR}x longer line cost {ratio:.0f}x"


def test_binary_log_hint_names_tb_extra_only_when_it_is_missing(tmp_path, monkeypatch):
    import importlib.util

    from entangle.errors import EntangleValueError
    from entangle.logs.text import read_text_log

    (tmp_path / "log.txt").write_bytes(b"\xff\xfe\x00binary")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "tensorboard" else real(n, *a)
    )
    with pytest.raises(EntangleValueError) as info:
        read_text_log(tmp_path / "log.txt")
    assert "install" not in str(info.value) and "events.out.tfevents" in str(info.value)
