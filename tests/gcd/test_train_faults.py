"""Training survives a kill at every write point, diverging runs stop cleanly.

The kill is injected here, in the test, at the audited write primitives of entangle.runs.io
(docs/reliability.md): every atomic write of a run (``atomic_write``, ``atomic_json``) passes
through ``io._write_temp`` and every record is one ``write`` on a file ``open_append`` opened,
so wrapping those two sees each write, and its write point is read off the target path
(:func:`write_point`). At the last occurrence of a point (the final epoch's) the wrapper leaves
what a SIGKILL there would leave (the first half of the record line, a half-written temporary
file) and raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.gcd.train import WALL_CLOCK_KEYS, TrainConfig, prepare, train
from entangle.runs import io as runio
from entangle.runs import writer as runwriter
from entangle.runs.directory import RunReader

# probing and the probe set once per run: the kill test is about the writes, not the probe
FAST = TrainConfig(
    data="synthetic",
    epochs=2,
    batch_size=64,
    pretrain_epochs=0,
    reference_epochs=1,
    probe_every=1000,
    probeset_every=1000,
    probeset_size=100,
    soc_k=4,
    device="cpu",
    eagc=True,
)
POINTS = (
    "steps",
    "epochs",
    "features",
    "checkpoint:model",
    "checkpoint:last",
    "checkpoint:reference",
    "DONE",
)
# written by a run too, not killed at: run.json (its creation; a resume rewrites it)
OTHER_WRITES = ("run.json",)


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` handler of the code under test sees it."""


def write_point(path) -> str:
    """The write point of a file of a run: ``epochs.jsonl`` -> "epochs",
    ``checkpoints/last.pt`` -> "checkpoint:last", ``features/epoch_002.npz`` -> "features",
    ``DONE`` -> "DONE", ``run.json`` -> "run.json"."""
    path = Path(path)
    if path.parent.name == "checkpoints":
        return f"checkpoint:{path.stem}"
    if path.parent.name == "features":
        return "features"
    return path.stem if path.suffix == ".jsonl" else path.name


class WritePoints:
    """The writes of a run counted by write point; the ``occurrence``-th at ``kill`` is killed."""

    def __init__(self, kill: str | None = None, occurrence: int = 0):
        self.seen: Counter = Counter()
        self.kill, self.occurrence = kill, occurrence

    def killed_at(self, path) -> bool:
        point = write_point(path)
        self.seen[point] += 1
        return point == self.kill and self.seen[point] == self.occurrence


class _Appends:
    """A record file of :func:`entangle.runs.io.open_append` whose killed write is torn."""

    def __init__(self, fh, path, points: WritePoints):
        self._fh, self._path, self._points = fh, path, points

    def write(self, data: bytes) -> int:
        if self._points.killed_at(self._path):
            self._fh.write(data[: len(data) // 2])  # a torn last line, as a SIGKILL leaves
            self._fh.flush()
            raise Killed
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


@contextlib.contextmanager
def watched_writes(points: WritePoints):
    """Route a run's writes through ``points`` (restored on exit, also after a kill)."""
    write_temp, open_append = runio._write_temp, runwriter.open_append

    def write_temp_or_die(path, dfd, write):
        if points.killed_at(path):
            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            _, fd = runio._temp_in(dfd, path.name)  # half written when the kill came
            os.write(fd, data[: len(data) // 2])
            os.close(fd)
            raise Killed
        return write_temp(path, dfd, write)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runio, "_write_temp", write_temp_or_die)
        # RunWriter opens its record files through the name it imported
        mp.setattr(runwriter, "open_append", lambda path: _Appends(open_append(path), path, points))
        yield points


@pytest.fixture(scope="module")
def setup():
    return prepare(FAST)


@pytest.fixture(scope="module")
def whole(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "run"
    train(FAST, path, setup)
    return path


def _count_points(setup, tmp_path) -> Counter:
    with watched_writes(WritePoints()) as points:
        train(FAST, tmp_path / "count", setup)
    return points.seen


def _numbers(records):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in records]


def _tensors(path):
    obj = torch.load(path, weights_only=True)
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            flat[prefix] = value

    walk("", obj)
    return flat


def assert_same_run(got, want):
    a, b = RunReader(got), RunReader(want)
    assert a.complete and b.complete
    assert _numbers(a.steps) == _numbers(b.steps)
    assert _numbers(a.epochs) == _numbers(b.epochs)
    assert a.summary == b.summary
    assert a.feature_epochs() == b.feature_epochs()
    for epoch in b.feature_epochs():
        fa, fb = a.features(epoch), b.features(epoch)
        assert fa.keys() == fb.keys()
        for key in fb:
            np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)
    assert sorted(p.name for p in a.checkpoints()) == sorted(p.name for p in b.checkpoints())
    for ckpt in b.checkpoints():
        ta, tb = _tensors(got / "checkpoints" / ckpt.name), _tensors(ckpt)
        assert ta.keys() == tb.keys(), ckpt.name
        for key, value in tb.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(ta[key], value, rtol=0, atol=0, msg=key)
            else:
                assert ta[key] == value, (ckpt.name, key)
    leftovers = [p for p in got.rglob("*.tmp")]
    assert not leftovers, leftovers


@pytest.mark.slow
def test_a_kill_at_every_write_point_resumes_to_the_uninterrupted_run(setup, whole, tmp_path):
    counts = _count_points(setup, tmp_path)
    assert set(counts) == {*POINTS, *OTHER_WRITES}, counts  # a new write point needs a kill
    assert counts["epochs"] == FAST.epochs and counts["DONE"] == 1, counts
    for point in POINTS:
        run_dir = tmp_path / point.replace(":", "-")
        with watched_writes(WritePoints(point, counts[point])) as points:  # the final epoch's
            with pytest.raises(Killed):
                train(FAST, run_dir, setup)
        assert points.seen[point] == counts[point]
        assert not RunReader(run_dir).complete
        train(FAST, run_dir, setup)
        # the resume found and repaired what the kill left
        repaired = RunReader(run_dir).meta["resumed_at"][-1]
        assert ("dropped_torn_bytes" if point in ("steps", "epochs") else "removed_tmp") in repaired
        assert_same_run(run_dir, whole)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_settings_are_refused_up_front(lr):
    with pytest.raises(EntangleValueError, match="lr must be a finite number >= 0"):
        dataclasses.replace(FAST, lr=lr)


def test_a_diverging_run_stops_with_its_reason_recorded(setup, tmp_path):
    config = dataclasses.replace(
        FAST, lr=1e6, eagc=False, epochs=1, probe_every=1, probeset_every=3
    )
    with pytest.raises(EntangleRuntimeError, match="consecutive non-finite losses"):
        train(config, tmp_path / "stop", setup)
    reader = RunReader(tmp_path / "stop")
    assert not reader.complete
    assert any("diverged" in w for w in reader.warnings)
    assert "diverged" in (tmp_path / "stop" / "STOPPED").read_text()

    # --on-nan continue trains on: NaN metrics with a reason, never a crash
    config = dataclasses.replace(config, on_nan="continue")
    summary = train(config, tmp_path / "go", setup)
    reader = RunReader(tmp_path / "go")
    assert reader.complete and math.isnan(summary["soc"])
    probed = [s["probeset"] for s in reader.steps if "probeset" in s]
    assert any("nan_reason" in p for p in probed)
    assert "NaN or inf" in reader.epochs[-1]["nan_reason"]
    # argmax of NaN logits would be a made-up accuracy
    assert reader.epochs[-1]["acc_all"] is None and math.isnan(summary["acc_all"])  # null: NaN
    assert reader.epochs[-1]["nonfinite_loss_run"] >= config.nan_limit


def test_a_corrupt_last_checkpoint_on_resume_is_one_clear_line(setup, tmp_path):
    from entangle.checkpoints import CheckpointError

    config = dataclasses.replace(FAST, epochs=1, eagc=False)
    with watched_writes(WritePoints("DONE", 1)), pytest.raises(Killed):
        train(config, tmp_path / "run", setup)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        train(config, tmp_path / "run", setup)
    assert "\n" not in str(info.value)
