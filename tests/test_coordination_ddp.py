"""A gradient coordinator under DDP (gloo, 2 CPU processes): it aggregates the all-reduced
per-loss gradients, so every rank applies the same update, torchjd's of the global rows."""

from __future__ import annotations

import pytest
import torch

from tests.support import ddp_coordination as scenario
from tests.support.ddp import probe_model, probe_shard
from tests.support.toy import toy_losses

pytestmark = [
    pytest.mark.extras,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed"),
]
pytest.importorskip("torchjd")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp-coord")
    torch.multiprocessing.spawn(
        scenario.worker, args=(str(tmp / "init"), str(tmp)), nprocs=scenario.WORLD, join=True
    )
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(scenario.WORLD)]


def global_rows(step: int) -> torch.Tensor:
    """[2, P]: g_sup and g_unsup of each shard (separate backwards), averaged over ranks."""
    model = probe_model()
    params = list(model.parameters())
    rows = torch.zeros(2, sum(p.numel() for p in params), dtype=torch.float64)
    for rank in range(scenario.WORLD):
        x, y, labeled, _ = probe_shard(rank, step)
        for i in range(2):
            loss = toy_losses(model.head, model(x), y, labeled)[i]
            rows[i] += torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    return rows / scenario.WORLD


def test_every_rank_applies_torchjds_aggregation_of_the_global_rows(ranks):
    from entangle.coordination import CoordinatorConfig

    for step in range(scenario.STEPS):
        rows = global_rows(step)
        want = CoordinatorConfig(scenario.AGGREGATOR).aggregator()(rows)
        for rank in ranks:
            got = torch.cat([g.reshape(-1) for g in rank["grads"][step]])
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
        # the check can fail: the plain DDP update (the sum of the rows) is another one
        assert not torch.allclose(want, rows.sum(0), rtol=1e-3, atol=1e-6)


def test_the_coordinated_record_is_the_same_on_every_rank(ranks):
    first = [r["records"][0]["coordinated"]["all"] for r in ranks]
    assert first[0]["gdc"] == pytest.approx(first[1]["gdc"], rel=1e-9)
    rows = global_rows(0)
    want = torch.cat([g.reshape(-1) for g in ranks[0]["grads"][0]])
    cos = torch.nn.functional.cosine_similarity(rows[0], want, dim=0)
    assert first[0]["gdc"] == pytest.approx(float(1 - cos), abs=1e-9)
