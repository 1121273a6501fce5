"""Probe and EAGC under DistributedDataParallel: gloo, 2 CPU processes, float64.

One spawn runs both scenarios (tests/support/ddp.py) and saves each rank's gradients,
records and mu; the tests here recompute the same steps in one process and compare.
"""

from __future__ import annotations

import pytest
import torch

from entangle import RunReader
from entangle.metrics import gradient_conflict
from tests.support import ddp as scenario
from tests.support.toy import toy_losses

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)

RAW_KEYS = ("cos", "gdc", "norm_sup", "norm_unsup", "norm_ratio", "gms")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    run_dir = tmp / "run"
    torch.multiprocessing.spawn(
        scenario.worker,
        args=(str(tmp / "init"), str(tmp), str(run_dir)),
        nprocs=scenario.WORLD,
        join=True,
    )
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(scenario.WORLD)]
    return ranks, run_dir


def mean_over_ranks(per_rank: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack(gs).mean(0) for gs in zip(*per_rank, strict=True)]


def close(got, want, rtol=1e-6):
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------- Probe


def single_process_probe_grads(step: int):
    """Per-shard g_S, g_U (separate autograd.grad calls on fresh graphs), then the DDP mean."""
    model = scenario.probe_model()
    groups = scenario.probe_groups(model)
    params = list(model.parameters())
    sup_g, unsup_g = [], []
    for rank in range(scenario.WORLD):
        x, y, labeled, _ = scenario.probe_shard(rank, step)
        sup, _, _ = toy_losses(model.head, model(x), y, labeled)
        sup_g.append(list(torch.autograd.grad(sup, params)))
        _, unsup, _ = toy_losses(model.head, model(x), y, labeled)
        unsup_g.append(list(torch.autograd.grad(unsup, params)))
    g_s, g_u = mean_over_ranks(sup_g), mean_over_ranks(unsup_g)
    index = {id(p): i for i, p in enumerate(params)}
    out = {}
    for name, group in groups.items():
        idx = [index[id(p)] for p in group]
        out[name] = gradient_conflict([g_s[i] for i in idx], [g_u[i] for i in idx])
    total = [s + u for s, u in zip(g_s, g_u, strict=True)]
    return out, total


def test_probe_grad_equals_plain_ddp_backward(ddp):
    ranks, _ = ddp
    for step in range(scenario.PROBE_STEPS):
        _, total = single_process_probe_grads(step)
        for rank in ranks:
            close(rank["probe"]["probed"][step], rank["probe"]["plain"][step])
            # DDP averaged the ranks' gradients: the mean of the per-shard gradients
            close(rank["probe"]["probed"][step], total)


def test_probe_raw_metrics_are_global_and_equal_on_every_rank(ddp):
    ranks, _ = ddp
    for step in range(scenario.PROBE_STEPS):
        want, _ = single_process_probe_grads(step)
        rec0, rec1 = (r["probe"]["records"][step] for r in ranks)
        assert rec0["raw"] == rec1["raw"]
        for name, metrics in want.items():
            for key in RAW_KEYS:
                assert rec0["raw"][name][key] == pytest.approx(float(metrics[key]), rel=1e-6)
            assert rec0["raw"][name]["conflict"] == bool(metrics["conflict"])
        # the shards differ, so a per-rank (unreduced) metric would not match: guard the test
        assert rec0["losses"] != rec1["losses"]


def test_rank_local_entries_are_named_so(ddp):
    ranks, run_dir = ddp
    for rank, r in enumerate(ranks):
        for rec in r["probe"]["records"]:
            local = rec["rank_local"]
            assert local["rank"] == rank and local["world_size"] == scenario.WORLD
            assert {"feature", "energy", "losses"} <= set(local["keys"])
            assert "raw" not in local["keys"]  # the gradient metrics are global
    # the per-row entries really are of each rank's own rows: they differ between ranks
    rec0, rec1 = (r["probe"]["records"][0] for r in ranks)
    assert rec0["feature"] != rec1["feature"]
    assert all("rank_local" in s for s in RunReader(run_dir).steps)


def test_only_rank_zero_writes_the_run(ddp):
    ranks, run_dir = ddp
    assert [r["probe"]["has_run"] for r in ranks] == [True, False]
    steps = RunReader(run_dir).steps
    assert [s["step"] for s in steps] == list(range(scenario.PROBE_STEPS))
    assert [s["rank"] for s in steps] == [0] * scenario.PROBE_STEPS
    for written, kept in zip(steps, ranks[0]["probe"]["records"], strict=True):
        assert written["raw"]["all"]["cos"] == pytest.approx(kept["raw"]["all"]["cos"])
        assert written["losses"] == pytest.approx(kept["losses"])


# ---------------------------------------------------------------- EAGC


def single_process_eagc():
    """The same EAGC steps in one process on the concatenated (global) batch."""
    model, reference, c, mu = scenario.eagc_setup()
    eagc = scenario.make_eagc(c, mu)
    grads, mus = [], []
    for step in range(scenario.EAGC_STEPS):
        x, y, labeled = scenario.eagc_global_batch(step)
        grads.append(scenario.eagc_step(model, model, eagc, reference, x, y, labeled))
        mus.append(eagc.mu.clone())
    return grads, mus


def test_eagc_ddp_equals_single_process_on_concatenated_batch(ddp):
    ranks, _ = ddp
    want_grads, want_mu = single_process_eagc()
    for step in range(scenario.EAGC_STEPS):
        for rank in ranks:
            close(rank["eagc"]["grads"][step], want_grads[step])
            assert float(rank["eagc"]["mu"][step]) == pytest.approx(float(want_mu[step]), rel=1e-12)
        assert torch.equal(ranks[0]["eagc"]["mu"][step], ranks[1]["eagc"]["mu"][step])
    # mu moved: the EMA saw labeled energy (no labeled rows would keep it at 0.6)
    assert float(want_mu[-1]) != pytest.approx(0.6)


def test_eagc_mu_is_global_not_rank_local(ddp):
    """Guard: each shard alone would move mu elsewhere, so equal mu means a global mean."""
    ranks, _ = ddp
    model, reference, c, mu = scenario.eagc_setup()
    x, y, labeled = scenario.eagc_global_batch(0)
    for rank in range(scenario.WORLD):
        eagc = scenario.make_eagc(c, mu)
        rows = scenario.eagc_rows(rank)
        scenario.eagc_step(model, model, eagc, reference, x[rows], y[rows], labeled[rows])
        assert float(eagc.mu) != pytest.approx(float(ranks[rank]["eagc"]["mu"][0]), rel=1e-6)
