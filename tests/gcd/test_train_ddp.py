"""`train` under DistributedDataParallel: gloo, 2 CPU processes, against a one-process replay.

SimGCD's train_mp semantics: each rank draws its own batch from the distributed weighted
sampler, computes its own losses, and DDP averages the gradients. ``train(shards=2)`` replays
the same two ranks' batches in one process (per-shard losses, their mean backpropagated), so
a 2-process run's records (rank 0's) and weights must equal the replay's to float tolerance;
a run killed inside epoch 1 and resumed must too.
"""

from __future__ import annotations

import math

import pytest
import torch

from entangle.checkpoints import safe_load
from entangle.gcd.train import WALL_CLOCK_KEYS, train
from entangle.probing.probe import RANK_LOCAL_KEYS
from entangle.runs.directory import RunReader
from tests.support import ddp_train as scenario

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)

# float32 on both sides, reduced in other orders (2 ranks + all-reduce vs one batch): measured
# worst |difference| 2.3e-5 on a record value (GDC = 1 - cos amplifies the cosine's rounding:
# 5e-6 on a GDC of 0.05), 3.3e-7 on a weight; one process with its own batches differs from
# the replay by 0.03 at least (median 0.09) in the same steps' GDC
RTOL, ATOL = 1e-4, 5e-5
WEIGHT_ATOL = 1e-6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_train")
    kill_step = scenario.steps_per_epoch() + 2  # inside epoch 1: last.pt holds epoch 0
    torch.multiprocessing.spawn(
        scenario.worker,
        args=(str(tmp / "init"), str(tmp), kill_step),
        nprocs=scenario.WORLD,
        join=True,
    )
    train(scenario.CONFIG, tmp / "replay", shards=scenario.WORLD)
    return {name: RunReader(tmp / name) for name in ("ddp", "resumed", "replay")}


def _global(record: dict) -> dict:
    """A record's entries that are of all ranks' rows (rank-local ones and clocks dropped)."""
    drop = set(RANK_LOCAL_KEYS) | set(WALL_CLOCK_KEYS) | {"rank_local", "nan"}
    # attribution splits the conflict over rows: each rank attributes its own rows
    return {k: v for k, v in record.items() if k not in drop and not k.startswith("attribution")}


def _close(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            assert a is b or (math.isnan(a) and math.isnan(b)), where
        else:
            assert math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL), (where, a, b)
    else:
        assert a == b, where


@pytest.mark.parametrize("name", ["ddp", "resumed"])
def test_ddp_records_equal_the_one_process_replay(runs, name):
    got, want = runs[name], runs["replay"]
    assert got.complete and want.complete
    assert got.meta["distributed"]["world_size"] == 2
    assert got.meta["distributed"]["mode"] == "ddp"
    assert want.meta["distributed"]["mode"] == "replayed in one process"
    assert got.meta["distributed"]["lr"] == want.meta["distributed"]["lr"]
    assert len(got.steps) == len(want.steps) == 2 * scenario.steps_per_epoch()
    for a, b in zip(got.steps, want.steps, strict=True):
        assert "raw" in a and "eagc" in a and a["rank_local"]["world_size"] == 2
        # eagc_authors too: after a resume each rank projects with its own previous weights
        _close(_global(a), _global(b), f"step {a['step']}")
    assert any("probeset" in s for s in got.steps)
    for a, b in zip(got.epochs, want.epochs, strict=True):
        _close(_global(a), _global(b), f"epoch {a['epoch']}")
    _close(got.summary, want.summary, "summary")
    ours = safe_load(got.path / "checkpoints" / "last.pt")
    theirs = safe_load(want.path / "checkpoints" / "last.pt")
    for part in ("backbone", "head"):
        for key, value in ours[part].items():
            torch.testing.assert_close(value, theirs[part][key], rtol=RTOL, atol=WEIGHT_ATOL)


def test_resumed_ddp_run_says_it_resumed(runs):
    assert len(runs["resumed"].meta["resumed_at"]) == 1
    assert "resumed_at" not in runs["ddp"].meta


def test_replay_differs_from_one_rank(runs, tmp_path):
    # the comparison can fail: one process with the plain sampler takes other steps
    single = train(scenario.CONFIG, tmp_path / "single")
    assert single["acc_all"] != runs["replay"].summary["acc_all"] or (
        RunReader(tmp_path / "single").steps[0]["raw"] != runs["replay"].steps[0]["raw"]
    )


def test_resume_with_another_world_size_is_refused(runs, tmp_path):
    import shutil

    from entangle.errors import EntangleValueError
    from entangle.gcd.train import check_run_dir

    cut = tmp_path / "cut"
    shutil.copytree(runs["ddp"].path, cut)
    (cut / "DONE").unlink()  # an unfinished 2-process run
    assert check_run_dir(scenario.CONFIG, cut, ranks=2) is True
    with pytest.raises(EntangleValueError, match="trained on 2 process"):
        check_run_dir(scenario.CONFIG, cut, ranks=1)
