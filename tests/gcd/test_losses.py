"""SimGCD objective: every term against an explicit loop / numpy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.gcd.losses import (
    LossConfig,
    gcd_losses,
    info_nce_loss,
    mean_entropy_gap,
    self_distillation_loss,
    supcon_loss,
    teacher_temperature_at,
)


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _log_softmax(v):
    return v - v.max() - np.log(np.exp(v - v.max()).sum())


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _naive_contrastive(z, anchors, positives_of, candidates_of, tau):
    """Mean over anchors of the mean over positives of -log softmax over candidates."""
    z = _unit(z)
    per_anchor = []
    for i in anchors:
        cands = candidates_of(i)
        denom = np.log(sum(np.exp(z[i] @ z[a] / tau) for a in cands))
        pos = positives_of(i)
        per_anchor.append(np.mean([-(z[i] @ z[p] / tau - denom) for p in pos]))
    return float(np.mean(per_anchor)) if per_anchor else 0.0


def _batch(b=4, k=5, p=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(2 * b, p, generator=g, dtype=torch.float64)
    logits = torch.randn(2 * b, k, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2][:b] + [3] * max(0, b - 4))
    labeled = torch.tensor([True, True, True, False][:b] + [False] * max(0, b - 4))
    return proj, logits, labels, labeled


def test_supcon_matches_loop():
    proj, _, labels, labeled = _batch()
    y2, m2 = labels.repeat(2).numpy(), labeled.repeat(2).numpy()
    z, tau = proj.numpy(), 0.07
    lab_rows = [i for i in range(len(y2)) if m2[i]]
    expected = _naive_contrastive(
        z,
        lab_rows,
        lambda i: [j for j in lab_rows if j != i and y2[j] == y2[i]],
        lambda i: [j for j in lab_rows if j != i],
        tau,
    )
    got = supcon_loss(proj, labels.repeat(2), labeled.repeat(2), tau)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_info_nce_matches_loop():
    proj, *_ = _batch(b=3)
    z, m, tau = proj.numpy(), 6, 0.5
    expected = _naive_contrastive(
        z,
        range(m),
        lambda i: [(i + 3) % m],
        lambda i: [j for j in range(m) if j != i],
        tau,
    )
    assert info_nce_loss(proj, tau).item() == pytest.approx(expected, rel=1e-10)


def test_self_distillation_matches_loop():
    _, logits, *_ = _batch()
    x, b, ts, tt = logits.numpy(), 4, 0.1, 0.05
    directions = []
    for student_view, teacher_view in ((0, 1), (1, 0)):
        rows = []
        for i in range(b):
            q = _softmax(x[teacher_view * b + i] / tt)
            log_p = _log_softmax(x[student_view * b + i] / ts)
            rows.append(-(q * log_p).sum())
        directions.append(np.mean(rows))
    got = self_distillation_loss(logits, ts, tt)
    assert got.item() == pytest.approx(np.mean(directions), rel=1e-10)


def test_self_distillation_teacher_gets_no_gradient():
    """Only the student path carries gradient: d/dlogits = (softmax_student - q) / (tau_s m)."""
    _, logits, *_ = _batch()
    logits = logits.clone().requires_grad_(True)
    self_distillation_loss(logits, 0.1, 0.05).backward()
    b = 4
    q = torch.softmax(logits.detach() / 0.05, 1)
    q_swapped = torch.cat([q[b:], q[:b]])
    expected = (torch.softmax(logits.detach() / 0.1, 1) - q_swapped) / (0.1 * 2 * b)
    torch.testing.assert_close(logits.grad, expected)


def test_mean_entropy_gap_matches_numpy_and_sign():
    _, logits, *_ = _batch()
    probs = np.stack([_softmax(r / 0.1) for r in logits.numpy()]).mean(0)
    expected = math.log(5) - (-(probs * np.log(probs)).sum())
    got = mean_entropy_gap(logits, 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert got.item() > 0
    # uniform mean prediction: no gap; minimising the term means raising the entropy
    assert mean_entropy_gap(torch.eye(5).repeat(2, 1), 0.1).item() == pytest.approx(0, abs=1e-9)


def test_gcd_losses_combines_parts_with_weights():
    proj, logits, labels, labeled = _batch()
    cfg = LossConfig(warmup_teacher_epochs=11)
    sup, unsup, parts = gcd_losses(proj, logits, labels, labeled, epoch=5, config=cfg)

    y2, m2 = labels.repeat(2).numpy(), labeled.repeat(2).numpy()
    x = logits.numpy()
    ce = np.mean([-_log_softmax(x[i] / 0.1)[y2[i]] for i in range(8) if m2[i]])
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-10)
    assert parts["teacher_temperature"] == pytest.approx(0.055)  # halfway from 0.07 to 0.04
    expected_sup = 0.35 * (ce + parts["supcon"].item())
    expected_unsup = 0.65 * (
        parts["distill"].item() + 2.0 * parts["memax"].item() + parts["infonce"].item()
    )
    assert sup.item() == pytest.approx(expected_sup, rel=1e-10)
    assert unsup.item() == pytest.approx(expected_unsup, rel=1e-10)
    assert parts["distill"].item() == pytest.approx(
        self_distillation_loss(logits, 0.1, 0.055).item(), rel=1e-12
    )


def test_unlabeled_labels_are_ignored():
    """Labels of unlabeled rows (e.g. -1 placeholders) do not change any term."""
    proj, logits, labels, labeled = _batch()
    hidden = torch.where(labeled, labels, torch.full_like(labels, -1))
    a = gcd_losses(proj, logits, labels, labeled, epoch=0)
    b = gcd_losses(proj, logits, hidden, labeled, epoch=0)
    assert a[0].item() == b[0].item() and a[1].item() == b[1].item()


def test_no_labeled_rows_gives_exact_zero_sup_with_finite_gradient():
    proj, logits, labels, _ = _batch()
    proj = proj.clone().requires_grad_(True)
    logits = logits.clone().requires_grad_(True)
    none = torch.zeros(4, dtype=torch.bool)
    sup, unsup, parts = gcd_losses(proj, logits, labels, none, epoch=0)
    assert sup.item() == 0.0
    assert parts["ce"].item() == 0.0 and parts["supcon"].item() == 0.0
    g_proj, g_logits = torch.autograd.grad(sup, (proj, logits))
    assert torch.equal(g_proj, torch.zeros_like(proj))
    assert torch.equal(g_logits, torch.zeros_like(logits))
    assert torch.isfinite(unsup)


def test_all_labeled_supcon_treats_other_view_as_positive():
    """A class seen once in the batch still has a positive: its other view."""
    proj, _, _, _ = _batch()
    labels = torch.arange(4)
    labeled = torch.ones(4, dtype=torch.bool)
    got = supcon_loss(proj, labels.repeat(2), labeled.repeat(2), 0.07)
    # all classes distinct: SupCon reduces to InfoNCE
    assert got.item() == pytest.approx(info_nce_loss(proj, 0.07).item(), rel=1e-10)


# SimGCD's settings, typed from its public code (CVMI-Lab/SimGCD):
SIMGCD_DEFAULTS = {
    "sup_weight": 0.35,  # train.py --sup_weight; scripts/run_*.sh
    "memax_weight": 2.0,  # train.py --memax_weight (scripts: 1 cifar10/cars/aircraft, 4 cifar100)
    "student_temperature": 0.1,  # train.py `student_out / 0.1`; model.py DistillLoss student_temp
    "warmup_teacher_temperature": 0.07,  # train.py --warmup_teacher_temp
    "teacher_temperature": 0.04,  # train.py --teacher_temp
    "warmup_teacher_epochs": 30,  # train.py --warmup_teacher_temp_epochs
    "supcon_temperature": 0.07,  # model.py SupConLoss(temperature=0.07, base_temperature=0.07)
    "infonce_temperature": 1.0,  # model.py info_nce_logits(temperature=1.0)
}


def test_defaults_are_simgcds():
    import dataclasses

    assert dataclasses.asdict(LossConfig()) == SIMGCD_DEFAULTS


def _simgcd_style_info_nce(z: np.ndarray, tau: float) -> float:
    """InfoNCE the way SimGCD forms it: per row, logits = [positive, negatives...] / tau and
    cross-entropy against index 0 (model.py info_nce_logits + nn.CrossEntropyLoss)."""
    z = _unit(z)
    m = z.shape[0]
    b = m // 2
    losses = []
    for i in range(m):
        partner = (i + b) % m
        others = [j for j in range(m) if j not in (i, partner)]
        logits = np.array([z[i] @ z[partner]] + [z[i] @ z[j] for j in others]) / tau
        losses.append(-_log_softmax(logits)[0])
    return float(np.mean(losses))


@pytest.mark.parametrize("tau", [1.0, 0.07])
def test_info_nce_matches_simgcds_logits_formulation(tau):
    proj, *_ = _batch(b=4)
    expected = _simgcd_style_info_nce(proj.numpy(), tau)
    assert info_nce_loss(proj, tau).item() == pytest.approx(expected, rel=1e-10)


def test_default_objective_uses_infonce_temperature_one():
    proj, logits, labels, labeled = _batch()
    _, unsup, parts = gcd_losses(proj, logits, labels, labeled, epoch=0)
    assert parts["infonce"].item() == pytest.approx(
        _simgcd_style_info_nce(proj.numpy(), 1.0), rel=1e-10
    )
    # the temperature matters: SupCon's 0.07 gives a different (larger) InfoNCE
    assert info_nce_loss(proj, 0.07).item() > 1.5 * parts["infonce"].item()


def test_teacher_temperature_warmup():
    cfg = LossConfig()
    schedule = np.linspace(0.07, 0.04, 30)
    for e in (0, 1, 15, 29):
        assert teacher_temperature_at(e, cfg) == pytest.approx(schedule[e])
    assert teacher_temperature_at(30, cfg) == 0.04
    assert teacher_temperature_at(500, cfg) == 0.04
    assert teacher_temperature_at(0, LossConfig(warmup_teacher_epochs=0)) == 0.04
    # numpy.linspace(0.07, 0.04, 1) == [0.07]: SimGCD's W = 1 warms epoch 0 only
    one = LossConfig(warmup_teacher_epochs=1)
    assert teacher_temperature_at(0, one) == 0.07 and teacher_temperature_at(1, one) == 0.04
    two = LossConfig(warmup_teacher_epochs=2)
    assert [teacher_temperature_at(e, two) for e in (0, 1, 2)] == pytest.approx(
        [*np.linspace(0.07, 0.04, 2), 0.04]
    )
    assert teacher_temperature_at(0.5, cfg) == pytest.approx(0.07 - 0.03 * 0.5 / 29)


def test_float32_gradients_are_finite_and_reach_both_inputs():
    proj, logits, labels, labeled = (t.float() if t.is_floating_point() else t for t in _batch())
    proj.requires_grad_(True)
    logits.requires_grad_(True)
    sup, unsup, _ = gcd_losses(proj, logits, labels, labeled, epoch=0)
    (sup + unsup).backward()
    assert torch.isfinite(proj.grad).all() and proj.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [{"sup_weight": 1.5}, {"student_temperature": 0.0}, {"warmup_teacher_epochs": -1}],
)
def test_bad_config_rejected(kwargs):
    with pytest.raises(EntangleValueError):
        LossConfig(**kwargs)


def test_shape_mismatch_rejected():
    proj, logits, labels, labeled = _batch()
    with pytest.raises(EntangleValueError, match="one per sample"):
        gcd_losses(proj, logits, labels.repeat(2), labeled.repeat(2), epoch=0)
    with pytest.raises(EntangleValueError, match="even number"):
        gcd_losses(proj[:7], logits[:7], labels, labeled, epoch=0)
