"""The run directory: round trips, append-only refusal, resume, schema check, crash safety."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError
from entangle.runs.directory import SCHEMA_VERSION, RunReader, RunWriter, read_jsonl


def _feature_arrays(n: int = 6, d: int = 3) -> dict:
    return {
        "features": torch.randn(n, d),
        "labels": np.arange(n) % 3,
        "labeled": np.arange(n) < 2,
        "novel": torch.arange(n) >= 4,
    }


def test_run_json_holds_config_seed_versions_and_schema(tmp_path):
    with RunWriter(tmp_path / "run", config={"lr": 0.1, "dims": (1, 2)}, seed=3, device="cpu"):
        pass
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["schema"] == SCHEMA_VERSION == 1
    assert meta["config"] == {"lr": 0.1, "dims": [1, 2]}
    assert meta["seed"] == 3 and meta["device"] == "cpu"
    assert set(meta["versions"]) == {"python", "torch", "numpy", "entangle"}
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["git_sha"] is None or len(meta["git_sha"]) >= 7
    assert meta["start_time"].endswith("+00:00")
    assert meta["host"]


def test_records_round_trip_with_nan_numpy_and_tensor_values(tmp_path):
    record = {
        "step": np.int64(7),
        "cos": torch.tensor(-0.25),
        "nan": float("nan"),
        "inf": np.float32("inf"),
        "vec": torch.tensor([1.0, float("nan")], dtype=torch.bfloat16),
        "arr": np.arange(4).reshape(2, 2),
        "conflict": torch.tensor(True),
        "nested": {"gdc": np.float16(0.5)},
    }
    with RunWriter(tmp_path / "run") as run:
        run.write_step(record)
        run.write_epoch({"epoch": 1, "acc_all": 0.5})
        run.finish({"acc_all": 0.5, "soc": float("nan")})
    reader = RunReader(tmp_path / "run")
    (step,) = reader.steps
    assert step == {
        "step": 7,
        "cos": -0.25,
        "nan": None,
        "inf": None,
        "vec": [1.0, None],
        "arr": [[0, 1], [2, 3]],
        "conflict": True,
        "nested": {"gdc": 0.5},
    }
    assert reader.epochs == [{"epoch": 1, "acc_all": 0.5}]
    assert reader.complete and reader.warnings == []
    assert reader.summary == {"acc_all": 0.5, "soc": None}
    # the file stays standard JSON: no NaN / Infinity tokens
    text = (tmp_path / "run" / "steps.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_column_turns_null_back_into_nan(tmp_path):
    with RunWriter(tmp_path / "run") as run:
        for cos in (0.5, float("nan"), -0.5):
            run.write_step({"raw": {"cos": cos}})
        run.write_step({"other": 1})
    col = RunReader(tmp_path / "run").column("raw.cos")
    assert col.dtype == np.float64
    np.testing.assert_array_equal(col, [0.5, np.nan, -0.5, np.nan])


def test_unsupported_record_value_is_a_type_error_naming_the_key(tmp_path):
    with RunWriter(tmp_path / "run") as run:
        with pytest.raises(EntangleTypeError, match=r"record\.bad"):
            run.write_step({"bad": object()})
        with pytest.raises(EntangleTypeError, match="dict"):
            run.write_step([1, 2])
    assert RunReader(tmp_path / "run").steps == []


def test_existing_run_is_never_overwritten(tmp_path):
    with RunWriter(tmp_path / "run", seed=1) as run:
        run.write_step({"step": 0})
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(EntangleValueError, match="resume=True"):
        RunWriter(tmp_path / "run", seed=2)
    assert (tmp_path / "run" / "run.json").read_bytes() == before
    assert RunReader(tmp_path / "run").steps == [{"step": 0}]


def test_directory_with_run_files_but_no_run_json_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "steps.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(EntangleValueError, match="steps.jsonl"):
        RunWriter(tmp_path / "run")
    # an existing directory with unrelated files is fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    RunWriter(tmp_path / "other").close()


def test_resume_appends_and_records_the_resume(tmp_path):
    run = RunWriter(tmp_path / "run", config={"lr": 0.1})
    run.write_step({"step": 0})
    run.close()
    with RunWriter(tmp_path / "run", resume=True, config={"lr": 99}) as again:
        again.write_step({"step": 1})
        again.finish()
    reader = RunReader(tmp_path / "run")
    assert [r["step"] for r in reader.steps] == [0, 1]
    assert reader.config == {"lr": 0.1}  # the original run.json is kept
    assert len(reader.meta["resumed_at"]) == 1 and reader.complete


def test_resume_cuts_a_torn_tail_before_appending(tmp_path):
    with RunWriter(tmp_path / "run") as run:
        run.write_step({"step": 0})
    with open(tmp_path / "run" / "steps.jsonl", "ab") as fh:
        fh.write(b'{"step": 1, "co')
    with RunWriter(tmp_path / "run", resume=True) as again:
        again.write_step({"step": 2})
    reader = RunReader(tmp_path / "run")
    assert reader.steps == [{"step": 0}, {"step": 2}]
    assert reader.meta["resumed_at"][0]["dropped_torn_bytes"] == {"steps.jsonl": 15}


def test_finished_run_cannot_be_resumed(tmp_path):
    with RunWriter(tmp_path / "run") as run:
        run.finish()
    with pytest.raises(EntangleValueError, match="finished"):
        RunWriter(tmp_path / "run", resume=True)


def test_writer_lifecycle(tmp_path):
    run = RunWriter(tmp_path / "run")
    run.finish({"a": 1})
    run.close()  # idempotent
    with pytest.raises(EntangleRuntimeError, match="finished"):
        run.write_step({"step": 1})
    with pytest.raises(EntangleRuntimeError, match="already finished"):
        run.finish()
    with RunWriter(tmp_path / "run2") as other:
        other.write_step({"step": 0})
    # leaving the with block closes but does not mark the run complete
    assert not (tmp_path / "run2" / "DONE").exists()
    with pytest.raises(EntangleRuntimeError, match="closed"):
        other.write_epoch({})
    other.finish({"late": True})  # finishing after the with block is fine
    assert RunReader(tmp_path / "run2").summary == {"late": True}


def test_exception_in_with_block_leaves_an_incomplete_readable_run(tmp_path):
    with pytest.raises(KeyError), RunWriter(tmp_path / "run") as run:
        run.write_step({"step": 0})
        raise KeyError("boom")
    reader = RunReader(tmp_path / "run")
    assert reader.steps == [{"step": 0}] and not reader.complete


def test_reader_rejects_non_runs_and_newer_schemas(tmp_path):
    with pytest.raises(EntangleValueError, match="not a run directory.*run.json"):
        RunReader(tmp_path)
    with RunWriter(tmp_path / "run"):
        pass
    meta_path = tmp_path / "run" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["schema"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(EntangleValueError, match=r"newer entangle \(schema 2\).*upgrade"):
        RunReader(tmp_path / "run")
    meta["schema"] = "1.3"  # a minor version is still readable
    meta_path.write_text(json.dumps(meta))
    assert RunReader(tmp_path / "run").meta["schema"] == "1.3"
    del meta["schema"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(EntangleValueError, match="schema"):
        RunReader(tmp_path / "run")


def test_torn_last_line_is_tolerated_and_reported(tmp_path):
    with RunWriter(tmp_path / "run") as run:
        for step in range(3):
            run.write_step({"step": step, "cos": 0.1 * step})
    path = tmp_path / "run" / "steps.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])  # cut the last record mid-way
    reader = RunReader(tmp_path / "run")
    assert [r["step"] for r in reader.steps] == [0, 1]
    assert any("steps.jsonl: last line is torn" in w for w in reader.warnings)
    assert any("incomplete" in w for w in reader.warnings)
    assert not reader.complete and reader.summary is None


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(EntangleValueError, match=r"x.jsonl: line 2"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(EntangleValueError, match="line 2.*JSON object"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == ([], [])


def test_features_round_trip_atomically(tmp_path):
    arrays = _feature_arrays()
    logits = torch.randn(6, 4, dtype=torch.bfloat16)
    with RunWriter(tmp_path / "run") as run:
        path = run.save_features(2, **arrays, logits=logits, tsne=np.zeros((6, 2)))
        run.save_features(10, **arrays)
    assert path == tmp_path / "run" / "features" / "epoch_002.npz"
    # no temporary file is left next to the result
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_002.npz", "epoch_010.npz"]
    reader = RunReader(tmp_path / "run")
    assert reader.feature_epochs() == [2, 10]
    assert sorted(reader.features(10)) == ["features", "labeled", "labels", "novel"]
    got = reader.features(2)
    np.testing.assert_array_equal(got["features"], arrays["features"].numpy())
    assert got["labels"].dtype == np.int64 and got["labeled"].dtype == bool
    np.testing.assert_array_equal(got["novel"], arrays["novel"].numpy())
    np.testing.assert_array_equal(got["logits"], logits.float().numpy())
    assert got["tsne"].shape == (6, 2)
    with pytest.raises(EntangleValueError, match=r"epoch 3.*\[2, 10\]"):
        reader.features(3)


def test_save_features_validates_lengths_and_shapes(tmp_path):
    arrays = _feature_arrays()
    with RunWriter(tmp_path / "run") as run:
        with pytest.raises(EntangleValueError, match="one row per sample.*'labels': 5"):
            run.save_features(0, **{**arrays, "labels": np.zeros(5)})
        with pytest.raises(EntangleValueError, match="logits must be 2-D"):
            run.save_features(0, **arrays, logits=np.zeros(6))
        with pytest.raises(EntangleValueError, match="non-negative"):
            run.save_features(-1, **arrays)
    assert RunReader(tmp_path / "run").feature_epochs() == []


def test_checkpoints_load_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    with RunWriter(tmp_path / "run") as run:
        path = run.save_checkpoint("epoch_001", {"model": model.state_dict(), "epoch": 1})
        assert path == run.checkpoint_path("epoch_001") == path.parent / "epoch_001.pt"
        with pytest.raises(EntangleTypeError, match=r"state\['rng'\].*weights_only"):
            run.save_checkpoint("bad", {"rng": np.random.default_rng(0)})
        with pytest.raises(EntangleValueError, match="plain file name"):
            run.checkpoint_path("../escape")
    reader = RunReader(tmp_path / "run")
    assert reader.checkpoints() == [path]
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())


_CHILD = textwrap.dedent(
    """
    import sys
    from entangle.runs.directory import RunWriter

    run = RunWriter(sys.argv[1], seed=0)
    for step in range(1_000_000):
        run.write_step({"step": step, "payload": [0.123456789] * 200})
        if step == 20:
            print("ready", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_writer_leaves_a_readable_run(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)  # mid-loop: possibly mid-record
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    reader = RunReader(tmp_path / "run")
    steps = [r["step"] for r in reader.steps]
    assert len(steps) > 20 and steps == list(range(len(steps)))
    assert not reader.complete
    assert "incomplete" in reader.warnings[-1]
    assert all("torn" in w for w in reader.warnings[:-1])
    # and the killed run can be resumed into a consistent file
    with RunWriter(tmp_path / "run", resume=True) as run:
        run.write_step({"step": len(steps)})
        run.finish()
    resumed = RunReader(tmp_path / "run")
    assert [r["step"] for r in resumed.steps] == list(range(len(steps) + 1))
    assert resumed.complete and resumed.warnings == []


def test_reader_name_defaults_to_directory(tmp_path):
    with RunWriter(tmp_path / "my-run"):
        pass
    with RunWriter(tmp_path / "named", name="baseline"):
        pass
    assert RunReader(tmp_path / "my-run").name == "my-run"
    assert RunReader(tmp_path / "named").name == "baseline"
    assert RunReader(tmp_path / "my-run").column("x").shape == (0,)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("config", [1]),
        ("resumed_at", 5),
        ("resumed_at", [5]),
        ("calibration", 5),
        ("calibration", [1, 2]),
        ("calibration", {"aperture": "2"}),
        ("calibration", {"aperture": 2.0, "auto_aperture": "x"}),
        ("name", 5),
        ("seed", "x"),
        ("seed", True),
        ("versions", 3),
        ("conceptor", 5),
    ],
)
def test_run_json_fields_of_the_wrong_type_are_named(tmp_path, key, value):
    """config: [1], resumed_at: 5, calibration: 5 crashed readers and resumes (issue 19)."""
    with RunWriter(tmp_path / "run", config={"lr": 0.1}, seed=0):
        pass
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    meta[key] = value
    (tmp_path / "run" / "run.json").write_text(json.dumps(meta))
    for read in (RunReader, lambda p: RunWriter(p, resume=True)):
        with pytest.raises(EntangleValueError) as err:
            read(tmp_path / "run")
        assert f"{key!r} must be" in str(err.value) and "\n" not in str(err.value)


def test_valid_run_json_fields_pass(tmp_path):
    cal = {"aperture": 2.0, "auto_aperture": None}
    with RunWriter(tmp_path / "run", config=None, seed=None, name="ü") as run:
        run.write_meta("calibration", cal)
    assert RunReader(tmp_path / "run").meta["calibration"] == cal


# ---------------------------------------------------------------- hostile records (issue 19)
def _json_values():
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


_KEYS = ["schema", "name", "config", "seed", "versions", "git_sha", "device", "start_time"]
_KEYS += ["host", "resumed_at", "calibration", "conceptor", "lock_taken_over"]


def _read_everything(path) -> None:
    """What report and a resume read of a run: every property and every numeric column."""
    reader = RunReader(path)
    assert isinstance(reader.name, str)
    _ = reader.config, reader.complete, reader.summary, reader.end_time, reader.warnings
    for table in ("steps", "epochs"):
        for key in ("step", "epoch", "acc_all"):
            reader.column(key, table)
    reader.feature_epochs()


def _fuzz():
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


def test_any_run_json_is_read_or_refused_in_one_line(tmp_path):
    from hypothesis import given
    from hypothesis import strategies as st

    with RunWriter(tmp_path / "run", config={"lr": 0.1}, seed=0) as run:
        run.write_step({"step": 0, "cos": 0.1})
    meta_path = tmp_path / "run" / "run.json"
    good = json.loads(meta_path.read_text())

    @_fuzz()
    @given(changes=st.dictionaries(st.sampled_from(_KEYS), _json_values(), max_size=4))
    def check(changes):
        meta_path.write_text(json.dumps({**good, **changes}))
        try:
            _read_everything(tmp_path / "run")
            RunWriter(tmp_path / "run", resume=True).close()  # a resume reads and extends it
        except EntangleValueError as exc:
            assert "\n" not in str(exc)

    check()


def test_any_record_lines_are_read_or_refused_in_one_line(tmp_path):
    """steps.jsonl / epochs.jsonl lines: any JSON value, odd step keys, bytes that are not
    JSON or not UTF-8."""
    from hypothesis import given
    from hypothesis import strategies as st

    with RunWriter(tmp_path / "run", config={"lr": 0.1}, seed=0):
        pass
    record = st.dictionaries(
        st.sampled_from(["step", "epoch", "acc_all", "raw", "x"]), _json_values(), max_size=4
    )
    line = st.one_of(
        record.map(lambda r: json.dumps(r).encode()),
        _json_values().map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=20).filter(lambda b: b"\n" not in b),
    )

    @_fuzz()
    @given(steps=st.lists(line, max_size=4), epochs=st.lists(line, max_size=4))
    def check(steps, epochs):
        for name, lines in (("steps.jsonl", steps), ("epochs.jsonl", epochs)):
            (tmp_path / "run" / name).write_bytes(b"".join(x + b"\n" for x in lines))
        try:
            _read_everything(tmp_path / "run")
        except EntangleValueError as exc:
            assert "\n" not in str(exc)

    check()
