"""entangle.runs.reader: a resume's superseded records, the DONE/STOPPED states, run.json checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entangle.errors import EntangleValueError
from entangle.runs.reader import RunReader
from entangle.runs.writer import RunWriter


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_a_resumes_rewritten_steps_supersede_the_abandoned_ones(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        for step, cos in [(0, 0.1), (1, 0.2), (2, 0.3), (1, -0.2), (2, -0.3)]:
            run.write_step({"step": step, "cos": cos})
    reader = RunReader(tmp_path / "r")
    assert [(s["step"], s["cos"]) for s in reader.steps] == [(0, 0.1), (1, -0.2), (2, -0.3)]
    assert any("2 records superseded by a resume" in w for w in reader.warnings)
    assert reader.column("cos").tolist() == [0.1, -0.2, -0.3]


def test_a_non_integer_step_names_the_line(tmp_path):
    with RunWriter(tmp_path / "r"):
        pass
    _lines(tmp_path / "r" / "steps.jsonl", [{"step": 0}, {"step": "1"}])
    with pytest.raises(EntangleValueError, match=r"record 2 has step = '1', not an integer"):
        RunReader(tmp_path / "r")


def test_done_stopped_and_incomplete_runs(tmp_path):
    with RunWriter(tmp_path / "stopped") as run:
        run.stop("loss diverged")
    reader = RunReader(tmp_path / "stopped")
    assert not reader.complete and reader.summary is None and reader.end_time is None
    assert "run stopped before its end: loss diverged" in reader.warnings
    run = RunWriter(tmp_path / "done", name="mine")
    run.finish({"acc": 0.5})
    reader = RunReader(tmp_path / "done")
    assert reader.complete and reader.summary == {"acc": 0.5} and reader.end_time
    assert reader.name == "mine" and reader.warnings == []
    (tmp_path / "done" / "DONE").write_text("{", encoding="utf-8")
    with pytest.raises(EntangleValueError, match="DONE is not valid JSON"):
        RunReader(tmp_path / "done")


@pytest.mark.parametrize(
    "schema, match",
    [("2", "newer entangle .*upgrade"), ("x", "malformed 'schema'"), (0, "unknown schema")],
)
def test_schemas_this_reader_cannot_read_are_refused(tmp_path, schema, match):
    with RunWriter(tmp_path / "r"):
        pass
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    (tmp_path / "r" / "run.json").write_text(json.dumps(meta | {"schema": schema}))
    with pytest.raises(EntangleValueError, match=match):
        RunReader(tmp_path / "r")


def test_calibration_needs_a_positive_aperture(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        run.write_meta("calibration", {"aperture": 0.0})
    with pytest.raises(EntangleValueError, match="'calibration' must be an object with a pos"):
        RunReader(tmp_path / "r")


def test_features_and_checkpoints_are_listed_by_epoch_and_name(tmp_path):
    arrays = dict(features=np.eye(2), labels=[0, 1], labeled=[1, 0], novel=[0, 1])
    with RunWriter(tmp_path / "r") as run:
        for epoch in (3, 1):
            run.save_features(epoch, **arrays)
        run.save_checkpoint("b", {"x": 1})
        run.save_checkpoint("a", {"x": 2})
    reader = RunReader(tmp_path / "r")
    assert reader.feature_epochs() == [1, 3]
    assert reader.features()["labels"].tolist() == [0, 1]  # the latest epoch by default
    assert [p.name for p in reader.checkpoints()] == ["a.pt", "b.pt"]
