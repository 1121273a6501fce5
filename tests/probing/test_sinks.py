"""entangle.probing.sinks: where a Probe's records go (memory or a run) and who finishes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.probing.sinks import MemoryStore, RunStore, open_sinks
from entangle.runs.directory import RunReader, RunWriter


def test_memory_store_keeps_records_and_prefixes_epoch_and_step():
    store = MemoryStore()
    store.write_step({"step": 0, "raw": {}})
    written = store.write_epoch(2, 10, {"acc": 0.5, "step": 99}, arrays=None)
    assert written == {"epoch": 2, "step": 99, "acc": 0.5}  # the record's own step wins
    assert list(written) == ["epoch", "step", "acc"]
    assert store.records == [{"step": 0, "raw": {}}] and store.epoch_records == [written]
    store.finish({"x": 1})
    store.abort()


def test_a_run_store_opened_from_a_path_finishes_it_with_its_summary(tmp_path):
    store = RunStore(tmp_path / "r", config={"lr": 0.1}, seed=3, default="cpu")
    store.write_step({"step": 0})
    arrays = {
        "features": np.ones((3, 2)),
        "labels": np.arange(3),
        "labeled": np.array([True, False, False]),
        "novel": np.array([False, False, True]),
    }
    written = store.write_epoch(0, 5, {"acc": 0.25}, arrays)
    assert written == {"epoch": 0, "step": 5, "acc": 0.25}
    store.finish({"best": 0.25})
    reader = RunReader(tmp_path / "r")
    assert reader.complete and reader.summary == {"best": 0.25}
    assert reader.meta["seed"] == 3 and reader.meta["device"] == "cpu"
    assert reader.steps == [{"step": 0}] and reader.epochs[0]["acc"] == 0.25
    assert reader.features(0)["labels"].tolist() == [0, 1, 2]


def test_an_aborted_own_run_is_left_incomplete(tmp_path):
    store = RunStore(tmp_path / "r", default="cpu")
    store.write_step({"step": 0})
    store.abort()
    assert not RunReader(tmp_path / "r").complete


def test_a_run_passed_in_is_left_to_its_owner(tmp_path):
    with RunWriter(tmp_path / "r") as run:
        store = RunStore(run)
        store.write_step({"step": 0})
        store.finish({"ignored": True})
        assert not RunReader(tmp_path / "r").complete
    assert RunReader(tmp_path / "r").summary != {"ignored": True}
    with RunWriter(tmp_path / "s") as run, pytest.raises(EntangleValueError, match="RunWriter"):
        RunStore(run, seed=1)


def test_open_sinks_picks_memory_without_a_run_and_records_the_params_device(tmp_path):
    store, sink = open_sinks(None, None, 1, [], config=None, seed=None, device=None)
    assert type(store) is MemoryStore and sink is None
    params = [torch.nn.Parameter(torch.zeros(1))]
    store, sink = open_sinks(tmp_path / "r", None, 1, params, config=None, seed=0, device=None)
    assert isinstance(store, RunStore) and store.own and sink is None
    store.finish(None)
    assert RunReader(tmp_path / "r").meta["device"] == "cpu"
