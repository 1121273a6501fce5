"""Attribution of a row subsample: the full computation's shares at the chosen rows, seeded."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from entangle import EAGC, Probe
from entangle.errors import EntangleValueError
from entangle.metrics import conceptor
from entangle.probing.attribution import RowJacobian, row_products
from entangle.probing.attribution_rows import chosen_rows, row_products_of
from entangle.probing.params import last_block
from tests.support.toy import toy_batch, toy_losses, toy_models, toy_step


def _full_shares(backbone, head, x, y, labeled):
    """Every row's share r_i / (|g_S| |g_U|), computed apart from the Probe."""
    theta = last_block(backbone)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    g_s = torch.autograd.grad(sup, theta, retain_graph=True)
    g_u = torch.autograd.grad(unsup, theta, retain_graph=True)
    feat_u = torch.autograd.grad(unsup, z, retain_graph=True)[0]
    r = row_products(RowJacobian(z, theta).jvp(list(g_s)), feat_u)
    norm = lambda gs: torch.cat([g.reshape(-1) for g in gs]).norm()  # noqa: E731
    return r / (norm(g_s) * norm(g_u))


def test_chosen_rows_are_seeded_by_the_step_sorted_and_distinct():
    a, b = chosen_rows(40, 7, step=3), chosen_rows(40, 7, step=3)
    assert torch.equal(a, b)
    assert len(set(a.tolist())) == 7 and a.tolist() == sorted(a.tolist())
    assert all(0 <= i < 40 for i in a.tolist())
    assert not torch.equal(a, chosen_rows(40, 7, step=4))
    assert torch.equal(chosen_rows(5, 9, step=0), torch.arange(5))
    with pytest.raises(EntangleValueError, match=">= 1"):
        chosen_rows(5, 0, step=0)


def test_per_row_products_equal_the_row_jacobian_at_the_chosen_rows():
    backbone, head = toy_models()
    x, y, labeled, _ = toy_batch(n=16)
    theta = last_block(backbone)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    g_s = list(torch.autograd.grad(sup, theta, retain_graph=True))
    feat_u = torch.autograd.grad(unsup, z, retain_graph=True)[0]
    full = row_products(RowJacobian(z, theta).jvp(g_s), feat_u)
    rows = chosen_rows(16, 5, step=2)
    got = row_products_of(z, theta, [(g_s, feat_u)], rows)
    assert got.shape == (1, 5)
    torch.testing.assert_close(got[0], full[rows], rtol=1e-10, atol=1e-14)


def test_subsample_record_is_the_full_computation_restricted_to_its_rows():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    shares = _full_shares(backbone, head, x, y, labeled)
    probe = Probe({"last": last_block(backbone)}, attribution=True, attribution_rows=6)
    record = toy_step(probe, backbone, head, x, y, labeled, novel)
    att = record["attribution"]
    sub = att["subsample"]
    rows = torch.tensor(sub["batch_rows"])
    assert sub["rows"] == 6 and sub["of"] == 16 and sub["seed"] == record["step"]
    assert torch.equal(rows, chosen_rows(16, 6, step=record["step"]))
    assert "closure" not in att  # sum_i r_i / <g_S, g_U> needs every row
    want, lab, nov = shares[rows], labeled[rows], novel[rows]
    u = att["unsup_rows"]
    assert u["sum"] == pytest.approx(want.sum().item(), rel=1e-9, abs=1e-12)
    assert u["group"]["labeled"] == pytest.approx(want[lab].sum().item(), rel=1e-9, abs=1e-12)
    assert u["group"]["unlabeled_new"] == pytest.approx(
        want[~lab & nov].sum().item(), rel=1e-9, abs=1e-12
    )
    classes = y[rows][~lab]
    for k in range(len(u["class"])):
        assert u["class"][k] == pytest.approx(
            want[~lab][classes == k].sum().item(), rel=1e-9, abs=1e-12
        )
        assert u["class_rows"][k] == int((classes == k).sum())
    order = torch.argsort(want)[: len(u["top_share"])]
    assert u["top_share"] == pytest.approx(want[order].tolist(), rel=1e-9, abs=1e-12)
    assert u["top_index"] == (100 + rows[order]).tolist()  # named by the loop's index=


def test_all_rows_by_per_row_backwards_equal_the_row_jacobian_record():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    full = toy_step(Probe(backbone, attribution=True), backbone, head, x, y, labeled, novel)
    every_row = Probe(backbone, attribution=True, attribution_rows=100)
    rows = toy_step(every_row, backbone, head, x, y, labeled, novel)
    a, b = full["attribution"], rows["attribution"]
    assert b["subsample"]["rows"] == b["subsample"]["of"] == 12
    assert b["closure"] == pytest.approx(a["closure"], rel=1e-9)
    for key in ("sum", "class", "cluster", "top_share", "top_index"):
        assert b["unsup_rows"][key] == pytest.approx(a["unsup_rows"][key], rel=1e-9, abs=1e-12)
    assert b["unsup_rows"]["group"] == pytest.approx(a["unsup_rows"]["group"], rel=1e-9)


def test_eagc_corrected_subsample_equals_the_full_corrected_shares():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    with torch.no_grad():
        ref = backbone(x) + 0.1
        c = conceptor(ref[labeled].float()).double()
    records = []
    for rows in (None, 12, 4):
        eagc = EAGC(c, 0.5, eep_weight=1.0)  # fresh: mu moves with every coordinate call
        probe = Probe(
            {"last": last_block(backbone)}, eagc=eagc, attribution=True, attribution_rows=rows
        )
        records.append(toy_step(probe, backbone, head, x, y, labeled, novel, eagc=eagc, ref=ref))
    full, every, some = (r["attribution_eagc"] for r in records)
    assert every["unsup_rows"]["sum"] == pytest.approx(full["unsup_rows"]["sum"], rel=1e-9)
    assert every["closure"] == pytest.approx(1.0, rel=1e-6)
    assert every["unsup_rows"]["sum"] == pytest.approx(records[0]["eagc"]["last"]["cos"], rel=1e-6)
    # the subsample's corrected shares are the full ones at its rows: its top rows are the
    # full record's most negative rows among the chosen ones, in order
    chosen = set(some["subsample"]["batch_rows"])
    top = every["unsup_rows"]
    full_top = list(zip(top["top_index"], top["top_share"], strict=True))
    inside = [(i, s) for i, s in full_top if i - 100 in chosen]
    got = list(zip(some["unsup_rows"]["top_index"], some["unsup_rows"]["top_share"], strict=True))
    assert inside and [i for i, _ in got[: len(inside)]] == [i for i, _ in inside]
    assert [v for _, v in got[: len(inside)]] == pytest.approx([v for _, v in inside], rel=1e-9)
    raw = records[2]["attribution"]
    assert raw["subsample"]["batch_rows"] == some["subsample"]["batch_rows"]
    assert raw["unsup_rows"]["sum"] != pytest.approx(some["unsup_rows"]["sum"])


def test_subsample_leaves_the_training_gradient_and_metrics_untouched():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    out = []
    for rows in (None, 3):
        for p in backbone.parameters():
            p.grad = None
        attributed = rows is not None
        probe = Probe({"last": last_block(backbone)}, attribution=attributed, attribution_rows=rows)
        record = toy_step(probe, backbone, head, x, y, labeled, novel)
        out.append((record, [p.grad.clone() for p in backbone.parameters()]))
    (plain, g_plain), (sub, g_sub) = out
    for a, b in zip(g_plain, g_sub, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key, value in plain["raw"]["last"].items():
        assert sub["raw"]["last"][key] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_subsample_keeps_fused_attention_and_refuses_the_supervised_side():
    backbone, _ = toy_models()
    probe = Probe(backbone, attribution=True, attribution_rows=4)
    assert isinstance(probe.attribution_forward(), nullcontext)
    assert not isinstance(Probe(backbone, attribution=True).attribution_forward(), nullcontext)
    with pytest.raises(EntangleValueError, match="attribution_sup_side needs every row"):
        Probe(backbone, attribution=True, attribution_rows=4, attribution_sup_side=True)
    with pytest.raises(EntangleValueError, match="attribution_rows must be >= 1"):
        Probe(backbone, attribution=True, attribution_rows=0)


def test_planted_linear_shares_match_the_closed_form_at_the_chosen_rows():
    """z = W x: (J t)_i = t x_i, so r_i = <g_S x_i, G_U[i]> in closed form (numpy)."""
    g = torch.Generator().manual_seed(3)
    classes = torch.arange(5).repeat_interleave(6)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64) * 0.1
    x[:, 0] += 1.0
    labeled, novel = classes < 2, classes >= 3
    a = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    b = 0.3 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    b[3] = -a  # the planted opposing novel class
    backbone = torch.nn.Linear(6, 4, bias=False).double()
    probe = Probe(backbone, attribution=True, attribution_rows=10)
    z = backbone(x)
    sup = -(z[labeled] @ a).mean()
    unsup = -(z * b[classes]).sum(1).mean()
    record = probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, targets=classes)
    xs, bs = x.numpy(), b[classes].numpy()
    g_s = -np.outer(a.numpy(), xs[labeled.numpy()].mean(0))  # dL_sup/dW
    g_u = -(bs[:, :, None] * xs[:, None, :]).mean(0)  # dL_unsup/dW
    r = np.einsum("dk,ik,id->i", g_s, xs, -bs / 30)  # <g_S x_i, G_U[i]>
    shares = r / (np.linalg.norm(g_s) * np.linalg.norm(g_u))
    att = record["attribution"]
    rows = np.array(att["subsample"]["batch_rows"])
    assert len(rows) == 10 and att["subsample"]["of"] == 30
    u = att["unsup_rows"]
    assert u["sum"] == pytest.approx(shares[rows].sum(), rel=1e-9)
    unl = rows[~labeled.numpy()[rows]]
    for k in range(5):
        want = shares[unl][classes.numpy()[unl] == k].sum()
        assert u["class"][k] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert u["top_share"] == pytest.approx(np.sort(shares[rows])[:8].tolist(), rel=1e-9)
    # the planted class's chosen rows are the most negative of the subsample
    planted = int((classes.numpy()[rows] == 3).sum())
    assert planted > 0 and set(classes.numpy()[u["top_index"][:planted]]) == {3}
