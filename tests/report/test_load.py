"""entangle.report.load: runs read once, named uniquely, and what an analysed checkpoint is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from entangle.errors import EntangleValueError
from entangle.report.load import epoch_label, is_analysis, load_runs
from entangle.runs.directory import RunWriter
from tests.report.fake_runs import make_run


def _analysis_run(path, meta):
    config = {"checkpoint": "ckpt.pt", "grad_batches": 4, "checkpoint_meta": meta}
    with RunWriter(path, config=config) as run:
        run.write_step({"step": 0, "raw": {"cos": 0.1}})
    return path


def test_runs_are_read_with_their_records_and_names_made_unique(tmp_path):
    a = make_run(tmp_path / "a", name="same", n_steps=10)
    b = make_run(tmp_path / "b", name="same", eagc=True, n_steps=10, complete=False)
    runs = load_runs([a, b, a])
    assert [r.name for r in runs] == ["same", "same (2)", "same (3)"]
    assert len(runs[0].steps) == 10 and runs[0].complete and not runs[1].complete
    assert runs[0].group == "last_block" and runs[1].has_eagc and not runs[0].has_eagc
    assert runs[1].warnings and runs[0].meta["name"] == "same"
    assert [r.name for r in load_runs([a, b], names=["x", "y"])] == ["x", "y"]


def test_load_runs_refuses_no_runs_missing_folders_and_wrong_name_counts(tmp_path):
    with pytest.raises(EntangleValueError, match="no runs given"):
        load_runs([])
    with pytest.raises(EntangleValueError, match="does not exist"):
        load_runs([tmp_path / "nope"])
    a = make_run(tmp_path / "a", name="a", n_steps=5)
    with pytest.raises(EntangleValueError, match="got 2 names for 1 runs"):
        load_runs([a], names=["x", "y"])


def test_an_analysed_checkpoint_is_labelled_by_its_own_epoch(tmp_path):
    (run,) = load_runs([_analysis_run(tmp_path / "c", {"epoch": 5})])
    assert run.is_analysis and is_analysis(run) and run.checkpoint_epoch == 5
    assert run.epoch_label(0) == epoch_label(run, 0) == "checkpoint (epoch 5)"
    (unknown,) = load_runs([_analysis_run(tmp_path / "d", {"epoch": True})])
    assert unknown.checkpoint_epoch is None
    assert unknown.epoch_label(0) == "checkpoint (epoch not recorded)"
    (training,) = load_runs([make_run(tmp_path / "t", name="t", n_steps=5)])
    assert not training.is_analysis and training.epoch_label(3) == "epoch 3"


def test_helpers_accept_any_run_like_object():
    assert not is_analysis(object()) and epoch_label(object(), 2) == "epoch 2"
    assert is_analysis(SimpleNamespace(is_analysis=True))
