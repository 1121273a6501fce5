"""entangle.gcd.ranks: which ranks a process trains, the shared lr rule, the other ranks' view."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.gcd.config import TrainConfig
from entangle.gcd.ranks import SIMGCD_LR_BATCH, Live, OtherRank, Ranks
from entangle.runs.directory import RunWriter

CONFIG = TrainConfig(data="synthetic", epochs=1, batch_size=32, lr=0.1, device="cpu")


def test_one_process_replays_its_shards_as_local_ranks():
    ranks = Ranks.current(CONFIG, shards=3)
    assert (ranks.count, ranks.local, ranks.distributed) == (3, (0, 1, 2), False)
    assert ranks.main
    assert Ranks.current(CONFIG, shards=1).local == (0,)
    for shards in (0, -1):
        with pytest.raises(EntangleValueError, match=f"got {shards} \\(world size 1\\)"):
            Ranks.current(CONFIG, shards=shards)


def test_lr_follows_simgcds_linear_scaling_rule_for_several_ranks():
    one = Ranks(1, (0,), False)
    four = Ranks(4, (0, 1, 2, 3), False)
    assert one.lr(CONFIG) == 0.1 and one.lr(CONFIG, 0.5) == 0.5
    assert four.lr(CONFIG) == pytest.approx(0.1 * 32 * 4 / SIMGCD_LR_BATCH)
    assert four.lr(CONFIG, 0.5) == pytest.approx(0.5 * 32 * 4 / 128)


def test_meta_describes_the_replay_and_its_global_batch():
    meta = Ranks(2, (0, 1), False).meta(dataclasses.replace(CONFIG, lr_head=0.2))
    assert meta["mode"] == "replayed in one process" and meta["backend"] is None
    assert (meta["world_size"], meta["batch_size_per_rank"], meta["global_batch_size"]) == (
        2,
        32,
        64,
    )
    assert meta["lr"] == pytest.approx(0.05) and meta["lr_head"] == pytest.approx(0.1)
    assert Ranks(1, (0,), False).meta(CONFIG)["lr_head"] is None


def test_other_rank_reads_rank_zeros_meta_on_resume_and_writes_nothing(tmp_path):
    with RunWriter(tmp_path / "r", config={"a": 1}) as run:
        run.write_meta("calibration", {"aperture": 2.0})
        main_path = run.checkpoint_path("last")
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    view = OtherRank(tmp_path / "r", resume=True)
    assert view.meta["calibration"] == {"aperture": 2.0}
    view.write_meta("calibration", {"aperture": 9.0})  # rank 0's value is kept
    view.write_meta("conceptor", {"k": 3})
    assert view.meta["calibration"] == {"aperture": 2.0} and view.meta["conceptor"] == {"k": 3}
    assert view.checkpoint_path("last") == main_path
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    assert OtherRank(tmp_path / "r", resume=False).meta == {}


def test_live_holds_backbone_and_head_but_not_the_shared_prefix():
    backbone, head = torch.nn.Linear(3, 2), torch.nn.Linear(2, 4)
    x = torch.randn(5, 3)
    z, ref = Live(backbone, head, None)(x)
    torch.testing.assert_close(z, backbone(x))
    assert ref is None
    shared = torch.nn.Linear(3, 3)
    live = Live(backbone, head, lambda v: (shared(v), v))
    assert len(list(live.parameters())) == 4  # backbone's and head's, not the shared model's
    z, ref = live(x)
    torch.testing.assert_close(z, shared(x))
    assert ref is x
