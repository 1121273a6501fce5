"""Training survives a kill at every write point, diverging runs stop cleanly.

The kill is injected through ``entangle.runs.io.fault_hook`` (docs/reliability.md): the hook
raises at the last occurrence of a write point (the final epoch's), after leaving what a
real SIGKILL there would leave (a torn record line, a half-written temporary file).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.gcd.train import WALL_CLOCK_KEYS, TrainConfig, prepare, train
from entangle.runs import io as runio
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


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` handler of the code under test sees it."""


@pytest.fixture(scope="module")
def setup():
    return prepare(FAST)


@pytest.fixture(scope="module")
def whole(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "run"
    train(FAST, path, setup)
    return path


def _count_points(setup, tmp_path) -> dict:
    seen: dict[str, int] = {}
    runio.fault_hook = lambda name: seen.__setitem__(name, seen.get(name, 0) + 1)
    try:
        train(FAST, tmp_path / "count", setup)
    finally:
        runio.fault_hook = None
    return seen


def _kill_at(point: str, occurrence: int, run_dir):
    seen = {"n": 0}

    def hook(name):
        if name != point:
            return
        seen["n"] += 1
        if seen["n"] == occurrence:
            # what a SIGKILL at this point leaves behind
            if point in ("steps", "epochs"):
                with open(run_dir / f"{point}.jsonl", "ab") as fh:
                    fh.write(b'{"step": 99, "tor')
            else:
                folder = run_dir / ("features" if point == "features" else "checkpoints")
                (folder / f".{point.partition(':')[2] or point}.half.tmp").write_bytes(b"\0" * 9)
            raise Killed

    return hook


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
    assert set(POINTS) <= set(counts), counts
    for point in POINTS:
        run_dir = tmp_path / point.replace(":", "-")
        runio.fault_hook = _kill_at(point, counts[point], run_dir)  # the final epoch's write
        try:
            with pytest.raises(Killed):
                train(FAST, run_dir, setup)
        finally:
            runio.fault_hook = None
        assert not RunReader(run_dir).complete
        train(FAST, run_dir, setup)
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
    runio.fault_hook = _kill_at("DONE", 1, tmp_path / "run")
    try:
        with pytest.raises(Killed):
            train(config, tmp_path / "run", setup)
    finally:
        runio.fault_hook = None
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        train(config, tmp_path / "run", setup)
    assert "\n" not in str(info.value)
