"""SimGCD's optimiser: parameter groups without weight decay, cosine per epoch to lr * 1e-3."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from entangle.gcd.optim import param_groups, simgcd_optimizer
from entangle.models.heads import GCDHead

# CVMI-Lab/SimGCD train.py: CosineAnnealingLR(T_max=args.epochs, eta_min=args.lr * 1e-3)
ETA_MIN_FACTOR = 1e-3


def _model():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 8))
    backbone[0].requires_grad_(False)  # a frozen prefix
    return backbone, GCDHead(8, 5, proj_dim=4, hidden_dim=16, norm_last_layer=False)


def test_biases_and_one_dimensional_parameters_get_no_weight_decay():
    backbone, head = _model()
    decayed, plain = param_groups([backbone, head])
    named = {id(p): n for m in (backbone, head) for n, p in m.named_parameters()}
    # CVMI-Lab/SimGCD model.py get_params_groups: `name.endswith(".bias") or len(shape) == 1`
    want_plain = {
        n
        for m in (backbone, head)
        for n, p in m.named_parameters()
        if p.requires_grad and (n.endswith(".bias") or p.ndim == 1)
    }
    assert {named[id(p)] for p in plain["params"]} == want_plain
    assert plain["weight_decay"] == 0.0 and "weight_decay" not in decayed
    assert "1.weight" in want_plain  # the LayerNorm scale
    assert all(p.ndim >= 2 for p in decayed["params"])
    trainable = {id(p) for m in (backbone, head) for p in m.parameters() if p.requires_grad}
    assert {id(p) for g in (decayed, plain) for p in g["params"]} == trainable


def test_weight_decay_only_moves_the_decayed_group():
    backbone, head = _model()
    opt, _ = simgcd_optimizer([backbone, head], lr=0.1, momentum=0.0, weight_decay=0.5, epochs=3)
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    for p in backbone.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(backbone[2].bias, before["2.bias"])
    assert torch.equal(backbone[1].weight, before["1.weight"])
    assert torch.allclose(backbone[2].weight, before["2.weight"] * (1 - 0.1 * 0.5))


def test_cosine_schedule_per_epoch_to_lr_times_1e_3():
    backbone, head = _model()
    lr, epochs = 0.1, 4
    opt, sched = simgcd_optimizer(
        [backbone, head], lr=lr, momentum=0.9, weight_decay=5e-5, epochs=epochs
    )
    eta_min = lr * ETA_MIN_FACTOR
    seen = []
    for _ in range(epochs + 1):
        seen.append(opt.param_groups[0]["lr"])
        assert len({g["lr"] for g in opt.param_groups}) == 1
        opt.step()
        sched.step()
    want = [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(5)]
    assert seen == pytest.approx(want, rel=1e-9)
    assert seen[-1] == pytest.approx(eta_min)


def test_lr_head_gives_the_head_its_own_groups_and_one_shared_floor():
    # HaiyangZheng/EAGC methods/SimGCD.py train(): backbone groups at --lr_backbone, projector
    # groups at --lr, CosineAnnealingLR(T_max=epochs, eta_min=args.lr * 1e-3), args.lr the
    # head's: one floor for every group
    backbone, head = _model()
    lr, lr_head, epochs = 0.1, 1.0, 4
    opt, sched = simgcd_optimizer(
        [backbone],
        head=head,
        lr=lr,
        lr_head=lr_head,
        momentum=0.9,
        weight_decay=5e-5,
        epochs=epochs,
    )
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    trainable = lambda m: {id(p) for p in m.parameters() if p.requires_grad}  # noqa: E731
    assert len(ids) == 4
    assert ids[0] | ids[1] == trainable(backbone) and ids[2] | ids[3] == trainable(head)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-5, 0.0, 5e-5, 0.0]
    floor = 1.0 * 1e-3
    for e in range(epochs + 1):
        c = (1 + math.cos(math.pi * e / epochs)) / 2
        want_backbone, want_head = floor + (0.1 - floor) * c, floor + (1.0 - floor) * c
        got = [g["lr"] for g in opt.param_groups]
        assert got == pytest.approx([want_backbone] * 2 + [want_head] * 2, rel=1e-9)
        opt.step()
        sched.step()
    assert got[0] == pytest.approx(1e-3) and got[2] == pytest.approx(1e-3)  # the last epoch


def test_without_lr_head_the_head_joins_simgcds_two_groups():
    backbone, head = _model()
    opt, _ = simgcd_optimizer([backbone], head=head, lr=0.1, momentum=0.9, weight_decay=0, epochs=2)
    same, _ = simgcd_optimizer([backbone, head], lr=0.1, momentum=0.9, weight_decay=0, epochs=2)
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == [
        [id(p) for p in g["params"]] for g in same.param_groups
    ]
    with pytest.raises(ValueError, match="head"):
        simgcd_optimizer([backbone], lr=0.1, lr_head=1.0, momentum=0, weight_decay=0, epochs=2)
