"""Gradient-level coordinators: torchjd's aggregation of [g_sup, g_unsup], written into .grad."""

from __future__ import annotations

import pytest
import torch

from entangle import Probe
from entangle.coordination import AGGREGATORS, CoordinatorConfig, GradientCoordinator
from entangle.errors import EntangleValueError
from entangle.probing.params import last_block
from tests.support.toy import toy_batch, toy_losses, toy_models

# cvxpy's note that Nash-MTL's problem is not DPP (a speed remark from torchjd's solver)
pytestmark = [
    pytest.mark.extras,
    pytest.mark.filterwarnings("ignore:You are solving a parameterized problem:UserWarning"),
]
torchjd = pytest.importorskip("torchjd")


def _step_losses(backbone, head, step):
    x, y, labeled, _ = toy_batch(n=12, n_labeled=5, seed=step)
    z = backbone(x)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    return sup, unsup, z, labeled


def _train(coordinate: bool, steps: int = 20):
    backbone, head = toy_models(seed=3)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    probe = None
    if coordinate:
        coord = GradientCoordinator(params, CoordinatorConfig("sum"))
        probe = Probe({"last": last_block(backbone), "all": params}, every=3, coordinator=coord)
    for step in range(steps):
        sup, unsup, z, labeled = _step_losses(backbone, head, step)
        opt.zero_grad(set_to_none=True)
        if probe is None:
            (sup + unsup).backward()
        else:  # probed and plain steps both go through the coordinator
            probe.backward(sup, unsup, features=z, labeled=labeled)
        opt.step()
    return params


def test_sum_aggregator_trains_the_same_weights_as_plain_training():
    plain, summed = _train(False), _train(True)
    for a, b in zip(plain, summed, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    start = toy_models(seed=3)
    # the check can fail: 20 steps moved the weights well beyond the tolerance
    assert (plain[0] - start[0].stem.weight).abs().max() > 1e-3


def _direct_rows(backbone, head, params):
    """g_sup and g_unsup from two separate backwards on fresh graphs, stacked [2, P]."""
    rows = []
    for pick in (0, 1):
        losses = _step_losses(backbone, head, 0)
        grads = torch.autograd.grad(losses[pick], params, allow_unused=True)
        grads = [
            torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
        ]
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_applied_gradient_is_torchjds_aggregation_of_the_two_rows(name):
    backbone, head = toy_models(seed=4)
    params = list(backbone.parameters()) + list(head.parameters())
    config = CoordinatorConfig(name)
    want = config.aggregator()(_direct_rows(backbone, head, params))  # a fresh aggregator
    sup, unsup, _, _ = _step_losses(backbone, head, 0)
    GradientCoordinator(params, config).backward(sup, unsup)
    got = torch.cat([p.grad.reshape(-1) for p in params])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_backbone_setting_leaves_the_head_its_plain_gradient():
    backbone, head = toy_models(seed=4)
    rows = _direct_rows(backbone, head, list(head.parameters()))
    sup, unsup, _, _ = _step_losses(backbone, head, 0)
    coord = GradientCoordinator(backbone.parameters(), CoordinatorConfig("upgrad", "backbone"))
    coord.backward(sup, unsup)
    got = torch.cat([p.grad.reshape(-1) for p in head.parameters()])
    torch.testing.assert_close(got, rows.sum(0), rtol=1e-10, atol=1e-12)


def test_probe_records_the_coordinated_update_against_the_supervised_gradient():
    backbone, head = toy_models(seed=5)
    params = list(backbone.parameters()) + list(head.parameters())
    g_s = _direct_rows(backbone, head, params)[0]
    coord = GradientCoordinator(params, CoordinatorConfig("pcgrad"))
    probe = Probe({"last": last_block(backbone), "all": params}, coordinator=coord)
    sup, unsup, z, labeled = _step_losses(backbone, head, 0)
    record = probe.backward(sup, unsup, features=z, labeled=labeled)
    applied = torch.cat([p.grad.reshape(-1) for p in params])
    cos = torch.nn.functional.cosine_similarity(g_s, applied, dim=0)
    got = record["coordinated"]["all"]
    assert got["gdc"] == pytest.approx(float(1 - cos), abs=1e-9)
    u = applied - g_s
    assert got["norm_ratio"] == pytest.approx(float(u.norm() / g_s.norm()), rel=1e-9)
    assert set(record) >= {"raw", "coordinated", "feature"} and "eagc" not in record
    # raw is the plain split, unchanged by the coordination
    assert record["raw"]["all"]["gdc"] != pytest.approx(got["gdc"], abs=1e-6)


def test_amp_aggregates_unscaled_rows_and_scales_the_update_back():
    def applied(scaler):
        backbone, head = toy_models(seed=6)
        params = list(backbone.parameters()) + list(head.parameters())
        sup, unsup, _, _ = _step_losses(backbone, head, 0)
        # Nash-MTL clips the update norm at max_norm: not scale-invariant, so it shows a
        # scaled aggregation at once
        GradientCoordinator(params, CoordinatorConfig("nashmtl")).backward(
            sup, unsup, scaler=scaler
        )
        return [p.grad.clone() for p in params]

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    plain, scaled = applied(None), applied(scaler)
    for a, b in zip(plain, scaled, strict=True):
        torch.testing.assert_close(b / 1024.0, a, rtol=1e-6, atol=1e-9)


def test_amp_overflow_leaves_the_plain_gradient_for_the_scaler_to_skip():
    backbone, head = toy_models(seed=6)
    params = list(backbone.parameters()) + list(head.parameters())
    sup, unsup, _, _ = _step_losses(backbone, head, 0)
    GradientCoordinator(params, CoordinatorConfig("upgrad")).backward(sup, unsup * float("inf"))
    assert not all(torch.isfinite(p.grad).all() for p in params)


def test_bad_settings_are_refused():
    with pytest.raises(EntangleValueError, match="unknown gradient coordinator"):
        CoordinatorConfig("pcgrd")
    with pytest.raises(EntangleValueError, match="coordinator_params"):
        CoordinatorConfig("pcgrad", params="head")
    backbone, head = toy_models()
    coord = GradientCoordinator(head.parameters(), CoordinatorConfig("pcgrad"))
    with pytest.raises(EntangleValueError, match="probed groups"):
        Probe({"last": last_block(backbone)}, coordinator=coord)
