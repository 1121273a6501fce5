"""entangle.probing.backward: one extra pass and one training backward give brute-force numbers."""

from __future__ import annotations

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.metrics import gradient_conflict
from entangle.probing.backward import group_metrics, step_record, training_backward
from entangle.probing.step import ProbedStep
from tests.support.toy import toy_batch, toy_losses, toy_models


def _groups(backbone, head):
    return {"last": list(backbone.blocks[-1].parameters()), "head": list(head.parameters())}


def _probed_step(backbone, head, scaler=None):
    x, y, labeled, novel = toy_batch()
    groups = _groups(backbone, head)
    params = [p for g in groups.values() for p in g]
    index = {id(p): i for i, p in enumerate(params)}
    z = backbone(x)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    scale = None if scaler is None else scaler.scale(torch.ones((), dtype=torch.float64))

    def metrics(s, u, t=None):
        return group_metrics(groups, index, s, u, t, scale, False, True)

    ps = ProbedStep(
        step=0, probed=0, sup=sup, unsup=unsup, scaler=scaler, scale=scale, params=params,
        features=z, labeled=labeled, novel=novel, logits=logits, rows={}, state=None,
        metrics=metrics,
    )  # fmt: skip
    return ps, groups, index, (x, y, labeled)


def _brute(backbone, head, batch, params):
    x, y, labeled = batch
    sup, unsup, _ = toy_losses(head, backbone(x), y, labeled)
    g_s = torch.autograd.grad(sup, params, retain_graph=True)
    g_u = torch.autograd.grad(unsup, params)
    return g_s, g_u


def test_step_record_raw_metrics_equal_brute_force_and_the_gradient_is_the_plain_one():
    backbone, head = toy_models()
    ps, groups, index, batch = _probed_step(backbone, head)
    record = step_record(ps, [], eagc=None, coordinator=None, index=index, epoch=3)
    n_labeled = int(batch[2].sum())
    assert 0 < n_labeled < len(batch[2])
    assert (record["step"], record["epoch"], int(record["n_labeled"])) == (0, 3, n_labeled)
    g_s, g_u = _brute(backbone, head, batch, ps.params)
    for name, group in groups.items():
        idx = [index[id(p)] for p in group]
        expected = gradient_conflict([g_s[i] for i in idx], [g_u[i] for i in idx])
        for key in ("cos", "gdc", "norm_sup", "norm_unsup"):
            torch.testing.assert_close(record["raw"][name][key], expected[key].double())
    # the training backward left sup + unsup's gradient on the parameters, and captured it
    for p, s, u, total in zip(ps.params, g_s, g_u, ps.total, strict=True):
        torch.testing.assert_close(p.grad, s + u)
        torch.testing.assert_close(total, p.grad)
    assert ps.g_s.shape == ps.features.shape and ps.g_u.shape == ps.features.shape


def test_a_loss_scale_is_divided_out_of_the_metrics():
    class Scaler:
        def scale(self, t):
            return t * 64.0

    plain_models, scaled_models = toy_models(), toy_models()
    ps, _, index, _ = _probed_step(*plain_models)
    plain = step_record(ps, [], eagc=None, coordinator=None, index=index, epoch=None)
    ps, _, index, _ = _probed_step(*scaled_models, scaler=Scaler())
    scaled = step_record(ps, [], eagc=None, coordinator=None, index=index, epoch=None)
    assert "epoch" not in scaled
    for key in ("norm_sup", "norm_unsup", "cos"):
        torch.testing.assert_close(scaled["raw"]["head"][key], plain["raw"]["head"][key])
    torch.testing.assert_close(scaled_models[1].weight.grad, plain_models[1].weight.grad * 64)


def test_features_outside_the_losses_graph_are_a_clear_error():
    backbone, head = toy_models()
    ps, _, index, (x, _, _) = _probed_step(backbone, head)
    ps.features = backbone(x)  # a recomputed forward: not what the losses came from
    with pytest.raises(EntangleValueError, match="not in the graph of the losses"):
        step_record(ps, [], eagc=None, coordinator=None, index=index, epoch=None)


def test_training_backward_removes_its_hooks():
    backbone, head = toy_models()
    ps, _, index, _ = _probed_step(backbone, head)
    ps.raw_sup = [None] * (len(ps.params) + 1)
    captured, feature_total, applied = training_backward(ps, None, None, index)
    assert applied is None and feature_total.shape == ps.features.shape
    assert all(c is not None for c in captured)
    assert all(not p._backward_hooks for p in ps.params)


def test_group_metrics_unnamed_gives_the_single_groups_statistics():
    s, u = [torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])]
    p = torch.nn.Parameter(torch.zeros(2))
    out = group_metrics({"params": [p]}, {id(p): 0}, s, u, None, None, False, False)
    assert out["cos"].item() == pytest.approx(-(2**-0.5))
