"""Attribution: row shares sum to cos(g_S, g_U), equal a brute-force VJP loop, rank planted rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entangle import EAGC, Probe
from entangle.errors import EntangleValueError
from entangle.metrics import conceptor
from entangle.probing.attribution import RowJacobian, row_products
from entangle.probing.params import last_block
from tests.support.toy import toy_batch, toy_losses, toy_models, toy_step


def _products(g_s, g_u):
    s = torch.cat([g.reshape(-1) for g in g_s])
    u = torch.cat([g.reshape(-1) for g in g_u])
    return s @ s, u @ u, s @ u


@pytest.mark.parametrize("group", ["last", "backbone"])
def test_shares_sum_to_cosine(group):
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    probe = Probe(
        {"last": last_block(backbone), "backbone": backbone},
        attribution=True,
        attribution_group=group,
        attribution_sup_side=True,
    )
    record = toy_step(probe, backbone, head, x, y, labeled, novel)
    att = record["attribution"]
    cos = record["raw"][group]["cos"]
    assert att["closure"] == pytest.approx(1.0, rel=1e-6)
    assert att["unsup_rows"]["sum"] == pytest.approx(cos, rel=1e-6)
    assert att["sup_rows"]["sum"] == pytest.approx(cos, rel=1e-6)
    groups = att["unsup_rows"]["group"]
    sup_groups = att["sup_rows"]["group"]
    assert sup_groups["labeled"] + sup_groups["unlabeled"] == pytest.approx(cos, rel=1e-6)
    assert groups["labeled"] + groups["unlabeled"] == pytest.approx(cos, rel=1e-6)
    assert groups["unlabeled_old"] + groups["unlabeled_new"] == pytest.approx(groups["unlabeled"])
    # class vector sums the unlabeled rows by their true class
    assert sum(att["unsup_rows"]["class"]) == pytest.approx(groups["unlabeled"], rel=1e-6)
    assert sum(att["unsup_rows"]["cluster"]) == pytest.approx(groups["unlabeled"], rel=1e-6)
    assert all(100 <= i < 112 for i in att["unsup_rows"]["top_index"])
    assert att["unsup_rows"]["class_outside"] == 0.0
    # rows per class: the unlabeled rows of each true class, counted independently
    want = np.bincount(y[~labeled].numpy(), minlength=len(att["unsup_rows"]["class"]))
    assert att["unsup_rows"]["class_rows"] == pytest.approx(want.tolist())


def test_class_ids_beyond_the_logits_width_are_summed_apart():
    from entangle.probing.attribution import attribution_summary

    shares = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    out = attribution_summary(shares, classes=torch.tensor([0, 1, 5]), num_classes=2)
    assert out["class"].tolist() == pytest.approx([0.1, -0.2])
    assert out["class_outside"].item() == pytest.approx(0.3)


def test_rows_equal_brute_force_vjp_loop():
    backbone, head = toy_models()
    x, y, labeled, _ = toy_batch()
    theta = last_block(backbone)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    g_s = torch.autograd.grad(sup, theta, retain_graph=True)
    feat_u = torch.autograd.grad(unsup, z, retain_graph=True)[0]
    jac = RowJacobian(z, theta)
    rows = row_products(jac.jvp(list(g_s)), feat_u)
    for i in range(x.shape[0]):
        # J_i^T G_U[i]: the VJP of row i alone
        only_i = torch.zeros_like(feat_u)
        only_i[i] = feat_u[i]
        vjp = torch.autograd.grad(z, theta, only_i, retain_graph=True)
        want = sum((a * b).sum() for a, b in zip(g_s, vjp, strict=True))
        assert rows[i].item() == pytest.approx(want.item(), rel=1e-9, abs=1e-15)
    g_u = torch.autograd.grad(unsup, theta, retain_graph=True)
    assert rows.sum().item() == pytest.approx(_products(g_s, g_u)[2].item(), rel=1e-9)


def test_planted_opposing_novel_class_ranks_first():
    """z = W x; L_sup pulls labeled rows along a, novel class 3's unsup term pushes along -a."""
    g = torch.Generator().manual_seed(3)
    d_in, dim, per = 6, 4, 6
    classes = torch.arange(5).repeat_interleave(per)
    # every class shares a positive common input direction, so (J g_S)_i . a > 0 for all rows
    x = torch.randn(classes.numel(), d_in, generator=g, dtype=torch.float64) * 0.1
    x[:, 0] += 1.0
    labeled = classes < 2
    novel = classes >= 3
    a = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    b = torch.zeros(5, dim, dtype=torch.float64)
    b[0, 1], b[1, 2], b[2, 1], b[4, 2] = 0.3, 0.3, -0.3, 0.3  # orthogonal to a
    b[3] = -a  # the planted opposing novel class
    backbone = torch.nn.Linear(d_in, dim, bias=False).double()
    probe = Probe(backbone, attribution=True)
    z = backbone(x)
    sup = -(z[labeled] @ a).mean()
    unsup = -(z * b[classes]).sum(1).mean()
    record = probe.backward(
        sup, unsup, features=z, labeled=labeled, novel=novel, targets=classes, index=classes
    )
    att = record["attribution"]["unsup_rows"]
    assert record["raw"]["cos"] < 0
    ranking = sorted(range(5), key=lambda c: att["class"][c])
    assert ranking[0] == 3
    assert att["class"][3] < 0.5 * att["sum"]  # carries most of the conflict
    assert set(att["top_index"][:per]) == {3}
    assert att["group"]["unlabeled_new"] < att["group"]["unlabeled_old"]


def test_eagc_corrected_shares_sum_to_corrected_cosine():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    with torch.no_grad():
        ref = backbone(x) + 0.1
        c = conceptor(ref[labeled].float()).double()
    eagc = EAGC(c, 0.5, eep_weight=1.0)
    probe = Probe({"last": last_block(backbone)}, eagc=eagc, attribution=True)
    record = toy_step(probe, backbone, head, x, y, labeled, novel, eagc=eagc, ref=ref)
    raw, corrected = record["attribution"], record["attribution_eagc"]
    assert raw["unsup_rows"]["sum"] == pytest.approx(record["raw"]["last"]["cos"], rel=1e-6)
    assert corrected["unsup_rows"]["sum"] == pytest.approx(record["eagc"]["last"]["cos"], rel=1e-6)
    assert corrected["closure"] == pytest.approx(1.0, rel=1e-6)
    assert not math.isclose(raw["unsup_rows"]["sum"], corrected["unsup_rows"]["sum"])


def test_every_n_probed_steps_and_training_gradient_untouched():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    probe = Probe({"last": last_block(backbone)}, attribution=2)
    plain = Probe({"last": last_block(backbone)})
    grads = []
    for p_ in (plain, probe):
        for p in backbone.parameters():
            p.grad = None
        toy_step(p_, backbone, head, x, y, labeled, novel)
        grads.append([p.grad.clone() for p in backbone.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    second = toy_step(probe, backbone, head, x, y, labeled, novel)
    third = toy_step(probe, backbone, head, x, y, labeled, novel)
    assert "attribution" not in second and "attribution" in third
    assert "sup_rows" not in third["attribution"]  # the supervised side is opt-in


def test_unknown_group_is_refused():
    backbone, _ = toy_models()
    with pytest.raises(EntangleValueError, match="attribution_group"):
        Probe({"last": last_block(backbone)}, attribution=True, attribution_group="nope")


def test_an_attributed_probed_step_blocks_only_for_its_one_transfer(monkeypatch):
    """The host-sync budget (see tests/bench/test_syncaudit.py) holds with attribution and EAGC."""
    from entangle.bench.syncaudit import BlockingOps
    from entangle.gcd.losses import LossConfig, gcd_losses
    from entangle.models.backbones import ResidualMLP
    from entangle.models.heads import GCDHead

    torch.manual_seed(0)
    backbone, reference = ResidualMLP(16, 16, 2), ResidualMLP(16, 16, 2)
    head = GCDHead(16, 6, hidden_dim=16, proj_dim=8)
    views = torch.randn(32, 16)
    labeled1 = torch.arange(16) % 2 == 0
    labels = torch.arange(16) % 6
    labeled, novel = labeled1.repeat(2), ((labels >= 4) & ~labeled1).repeat(2)
    eagc = EAGC.fit(reference, [views[labeled]], aperture=2.0)
    probe = Probe({"last_block": last_block(backbone)}, eagc=eagc, attribution=True)

    def run():
        with probe.attribution_forward():
            z = eagc.coordinate(backbone(views), labeled, reference(views).detach())
        proj, logits = head(z)
        sup, unsup, _ = gcd_losses(proj, logits, labels, labeled1, epoch=0, config=LossConfig())
        return probe.backward(
            sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits,
            targets=labels.repeat(2), index=torch.arange(16).repeat(2),
        )  # fmt: skip

    run()  # first use: constants on the device, the graph check
    transfers = []
    real = probe.transfer  # the probe's one host-sync point
    monkeypatch.setattr(probe, "transfer", lambda t: transfers.append(1) or real(t))
    with BlockingOps() as ops:
        record = run()
    assert "attribution_eagc" in record
    assert dict(ops.counts) == {}
    assert len(transfers) == 1


@pytest.mark.parametrize("groups", ["one", "two"])
@pytest.mark.parametrize("with_eagc", [False, True])
def test_attributed_step_measures_the_same_gradients_as_an_unattributed_one(groups, with_eagc):
    # on attributed steps the group's g_S comes from the row Jacobian's create-graph pass
    # (one backward fewer); every gradient metric must equal the plain probe's
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    probed = {"last": last_block(backbone)}
    if groups == "two":
        probed["all"] = [p for p in backbone.parameters() if p.requires_grad]
    with torch.no_grad():
        ref = backbone(x) + 0.1
        c = conceptor(ref[labeled].float()).double()
    records = []
    for attribution in (False, True):
        # a fresh coordinator each time: mu moves with every coordinate call
        eagc = EAGC(c, 0.5, eep_weight=1.0) if with_eagc else None
        probe = Probe(probed, eagc=eagc, attribution=attribution)
        records.append(toy_step(probe, backbone, head, x, y, labeled, novel, eagc=eagc, ref=ref))
    plain, attributed = records
    assert "attribution" in attributed and "attribution" not in plain
    for kind in ("raw", "eagc") if with_eagc else ("raw",):
        for name in probed:
            for key, value in plain[kind][name].items():
                assert attributed[kind][name][key] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert attributed["attribution"]["closure"] == pytest.approx(1.0, rel=1e-6)
