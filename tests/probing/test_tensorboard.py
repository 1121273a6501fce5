"""The live Probe's TensorBoard sink writes the per-class attribution the export writes."""

from __future__ import annotations

import math

import pytest
import torch

from entangle import Probe, RunReader, last_block
from entangle.logs.tensorboard_out import export_run
from tests.support.toy import toy_batch, toy_losses, toy_models

# "/" inside a class name would open a TensorBoard sub-section: written "_"
CLASS_NAMES = ["cat", "dog/wolf", "owl", "newt"]


def _read(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _attributed(tmp_path, name: str, config: dict | None, steps: int = 3):
    """A toy run probed with class attribution on every step, live TensorBoard beside it."""
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    probe = Probe(
        {"last_block": last_block(backbone)},
        run=tmp_path / name,
        config=config,
        attribution=True,
        tensorboard=tmp_path / f"tb-{name}",
    )
    opt = torch.optim.SGD(backbone.parameters(), lr=0.05)
    for _ in range(steps):
        z = backbone(x)
        sup, unsup, logits = toy_losses(head, z, y, labeled)
        opt.zero_grad()
        probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits,
                       targets=y)  # fmt: skip
        opt.step()
    probe.close()
    return tmp_path / name


@pytest.mark.extras
def test_live_sink_writes_per_class_attribution_named_by_the_runs_classes(tmp_path):
    pytest.importorskip("tensorboard")
    run = _attributed(tmp_path, "named", {"class_names": CLASS_NAMES})
    live = _read(tmp_path / "tb-named")
    steps = RunReader(run).steps
    assert len(steps) == 3
    for rec in steps:
        rows = rec["attribution"]["unsup_rows"]
        assert len(rows["class"]) == len(CLASS_NAMES)
        for i, name in enumerate(["cat", "dog_wolf", "owl", "newt"]):
            got = dict(live[f"attribution/unsup_rows/class/{name}"])[rec["step"]]
            assert math.isclose(got, rows["class"][i], rel_tol=1e-6, abs_tol=1e-9), name
            per_row = f"attribution/unsup_rows/class_per_row/{name}"
            if rows["class_rows"][i] > 0:
                want = rows["class"][i] / rows["class_rows"][i]
                assert math.isclose(dict(live[per_row])[rec["step"]], want, rel_tol=1e-6)
            else:  # a class without unlabeled rows in the batch has no per-row mean
                assert rec["step"] not in dict(live.get(per_row, []))
    assert not any(t.startswith("attribution/unsup_rows/class/") and t[-1].isdigit() for t in live)
    # the same series, step for step, as `entangle export tensorboard` of the finished run
    export_run(run, tmp_path / "exported")
    exported = _read(tmp_path / "exported")
    per_class = sorted(t for t in exported if "/class" in t)
    assert per_class and per_class == sorted(t for t in live if "/class" in t)
    for tag in per_class:
        assert [s for s, _ in live[tag]] == [s for s, _ in exported[tag]], tag
        for (_, a), (_, b) in zip(live[tag], exported[tag], strict=True):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), tag


@pytest.mark.extras
def test_without_class_names_the_series_are_class_indices(tmp_path):
    pytest.importorskip("tensorboard")
    _attributed(tmp_path, "bare", None, steps=1)
    live = _read(tmp_path / "tb-bare")
    tags = sorted(t for t in live if t.startswith("attribution/unsup_rows/class/"))
    assert tags == [f"attribution/unsup_rows/class/{i}" for i in range(4)]
