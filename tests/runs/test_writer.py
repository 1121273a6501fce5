"""entangle.runs.writer: RunWriter's entries, names and lifecycle, each refusal named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError
from entangle.runs.writer import RunWriter


def test_write_meta_adds_entries_once_and_never_replaces(tmp_path):
    with RunWriter(tmp_path / "r", config={"lr": 0.1}) as run:
        run.write_meta("calibration", {"aperture": np.float32(2.0)})
        meta = json.loads((tmp_path / "r" / "run.json").read_text())
        assert meta["calibration"] == {"aperture": 2.0} and meta["config"] == {"lr": 0.1}
        for key in ("calibration", "schema", "config"):
            with pytest.raises(EntangleValueError, match=f"already has '{key}'"):
                run.write_meta(key, 1)


def test_records_must_be_dicts_and_each_is_one_line(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        run.write_step({"step": 0, "cos": float("nan")})
        run.write_epoch({"epoch": 0, "acc": 0.5})
        with pytest.raises(
            EntangleTypeError, match="steps.jsonl: a record must be a dict, got list"
        ):
            run.write_step([1])
    lines = (tmp_path / "r" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 0, "cos": None}]
    assert (tmp_path / "r" / "epochs.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize(
    "name, expected",
    [("epoch_010", "epoch_010.pt"), ("best.pt", "best.pt"), ("ref.pth", "ref.pth")],
)
def test_checkpoint_path_adds_pt_to_a_plain_name(tmp_path, name, expected):
    with RunWriter(tmp_path / "r") as run:
        assert run.checkpoint_path(name) == tmp_path / "r" / "checkpoints" / expected


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x"])
def test_checkpoint_path_refuses_anything_but_a_file_name(tmp_path, name):
    with RunWriter(tmp_path / "r") as run, pytest.raises(EntangleValueError, match="plain file"):
        run.checkpoint_path(name)


def test_save_checkpoint_needs_a_dict_and_loads_weights_only(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        path = run.save_checkpoint("last", {"w": torch.ones(2), "epoch": 3})
        with pytest.raises(EntangleTypeError, match="must be a dict, got list"):
            run.save_checkpoint("bad", [torch.ones(1)])
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 3 and state["w"].tolist() == [1.0, 1.0]


def test_save_features_refuses_a_bad_epoch_and_keeps_extras(tmp_path):
    arrays = dict(features=np.ones((2, 3)), labels=[0, 1], labeled=[1, 0], novel=[0, 1])
    with RunWriter(tmp_path / "r") as run:
        for epoch in (-1, True, 1.0):
            with pytest.raises(EntangleValueError, match="non-negative int"):
                run.save_features(epoch, **arrays)
        with pytest.raises(EntangleValueError, match="logits must be 2-D"):
            run.save_features(0, **arrays, logits=np.ones(2))
        path = run.save_features(np.int64(4), **arrays, tsne=np.zeros((2, 2)))
    assert path.name == "epoch_004.npz"
    with np.load(path) as saved:
        assert saved["labels"].dtype == np.int64 and saved["labeled"].dtype == bool
        assert saved["tsne"].shape == (2, 2)


def test_stop_writes_the_reason_and_the_run_stays_incomplete(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        run.stop("diverged", steps=12)
    stopped = json.loads((tmp_path / "r" / "STOPPED").read_text())
    assert stopped["reason"] == "diverged" and stopped["steps"] == 12 and "time" in stopped
    assert not (tmp_path / "r" / "DONE").exists()


def test_a_closed_or_finished_writer_refuses_writes_and_finishes_once(tmp_path):
    run = RunWriter(tmp_path / "r")
    run.close()
    run.close()  # idempotent
    with pytest.raises(EntangleRuntimeError, match="is closed; open a new one"):
        run.write_step({"step": 0})
    run.finish({"acc": 1.0})  # allowed after close
    with pytest.raises(EntangleRuntimeError, match="already finished"):
        run.finish()
    with pytest.raises(EntangleRuntimeError, match="is finished"):
        run.write_meta("x", 1)
    done = json.loads((tmp_path / "r" / "DONE").read_text())
    assert done["summary"] == {"acc": 1.0}
