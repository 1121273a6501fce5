"""entangle.probing.step: the gradient helpers the Probe's parts share, against naive sums."""

from __future__ import annotations

import pytest
import torch

from entangle.metrics import rowwise_cosine
from entangle.probing.step import (
    ProbedStep,
    feature_conflict,
    flat,
    grads,
    minus,
    or_zeros,
    products,
    row_groups,
    scaled,
)


def test_products_sum_inner_products_over_parameters_with_none_as_zero():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(2, 3, generator=g), None, torch.randn(4, generator=g)]
    u = [torch.randn(2, 3, generator=g), torch.randn(5, generator=g), None]
    fs = torch.cat([s[0].reshape(-1), torch.zeros(5), s[2]]).double()
    fu = torch.cat([u[0].reshape(-1), u[1], torch.zeros(4)]).double()
    t = fs + fu
    expected = torch.stack([fs @ fs, fu @ fu, fs @ fu, fs @ t, t @ t])
    got = products(s, u)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert products([None], [None]).tolist() == [0.0] * 5


def test_products_use_the_given_total_instead_of_s_plus_u():
    s, u, total = [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 1.0])], [torch.tensor([2.0, 2.0])]
    assert products(s, u, total).tolist() == [1.0, 1.0, 0.0, 2.0, 8.0]


def test_minus_flat_or_zeros_and_scaled():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([1.0, 1.0])
    out = minus([a, None, None, a], [b, b, None, None])
    assert out[0].tolist() == [2.0, 3.0] and out[1].tolist() == [-1.0, -1.0]
    assert out[2] is None and out[3] is a
    params = [torch.zeros(2, 2), torch.zeros(3)]
    assert flat([None, torch.ones(3)], params).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert or_zeros(None, a).tolist() == [0.0, 0.0] and or_zeros(b, a) is b

    class Scaler:
        def scale(self, t):
            return t * 8

    assert scaled(torch.tensor(2.0), None).item() == 2.0
    assert scaled(torch.tensor(2.0), Scaler()).item() == 16.0


def test_grads_keep_the_graph_and_give_none_for_unused_inputs():
    x, unused = torch.tensor([1.0, 2.0], requires_grad=True), torch.ones(1, requires_grad=True)
    loss = (x**2).sum()
    first = grads(loss, [x, unused])
    assert first[0].tolist() == [2.0, 4.0] and first[1] is None
    assert grads(loss, [x])[0].tolist() == [2.0, 4.0]  # graph kept for a second pass
    assert grads(torch.tensor(1.0), [x, unused]) == [None, None]


def test_row_groups_and_feature_conflict_split_rows_by_the_masks():
    labeled = torch.tensor([True, False, False, False])
    novel = torch.tensor([False, False, True, True])
    assert list(row_groups(None, None)) == ["all"]
    groups = row_groups(labeled, novel)
    assert {k: v.tolist() for k, v in groups.items()} == {
        "labeled": [True, False, False, False],
        "unlabeled": [False, True, True, True],
        "unlabeled_old": [False, True, False, False],
        "unlabeled_new": [False, False, True, True],
    }
    assert list(row_groups(labeled, None)) == ["labeled", "unlabeled"]
    g_s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    g_u = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    out = feature_conflict(g_s, g_u, labeled, novel)
    cos = rowwise_cosine(g_s, g_u, warn=False)
    assert set(out) == set(groups)
    assert out["labeled"]["cos_mean"].item() == pytest.approx(float(cos[0])) == -1.0
    assert out["unlabeled_new"]["cos_mean"].item() == pytest.approx(float(cos[2:].mean()))
    assert out["unlabeled"]["conflict_frac"].item() == 0.0 and out["unlabeled"]["n"] == 3


def _step(**kw) -> ProbedStep:
    values = dict(
        step=0, probed=0, sup=torch.tensor(1.0), unsup=torch.tensor(2.0), scaler=None,
        scale=None, params=[], features=None, labeled=None, novel=None, logits=None, rows={},
        state=None, metrics=lambda *a: {},
    )  # fmt: skip
    return ProbedStep(**(values | kw))


def test_keep_rows_only_with_a_histogram_sink():
    rows = torch.arange(3.0)
    labeled = torch.tensor([True, False, True])
    without = _step(labeled=labeled)
    without.keep_rows("cos", rows)
    assert without.histograms is None
    wanted = _step(labeled=labeled, histograms={})
    wanted.keep_rows("cos", rows)
    assert wanted.histograms["cos"] is rows and wanted.histograms["labeled"] is labeled


def test_corrected_feature_grads_are_computed_once_per_step():
    calls = []

    class State:
        def transform(self, grad, mode):
            calls.append(mode)
            return grad * (2 if mode == "full" else 3)

    ps = _step(state=State())
    ps.g_s, ps.g_u = torch.ones(2, 2), torch.ones(2, 2)
    first = ps.corrected_feature_grads()
    assert ps.corrected_feature_grads() is first
    assert calls == ["full", "linear"]
    assert first[0].sum().item() == 8.0 and first[1].sum().item() == 12.0
