"""What attribution needs of the graph: independent rows, a double backward."""

from __future__ import annotations

import pytest
import torch

from entangle import Probe
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.probing.attribution_graph import check_rows_independent, math_attention
from tests.support.toy import toy_batch, toy_models, toy_step


class BNBackbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8))
        self.blocks = torch.nn.ModuleList(
            [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh())]
        )

    def forward(self, x):
        return self.blocks[0](self.pre(x))


def test_batchnorm_in_train_mode_is_refused():
    torch.manual_seed(0)
    backbone = BNBackbone().double()
    head = torch.nn.Linear(8, 4).double()
    x, y, labeled, novel = toy_batch()
    probe = Probe({"block": backbone.blocks[0]}, attribution=True)
    with pytest.raises(EntangleValueError, match="rows interact.*BatchNorm"):
        toy_step(probe, backbone, head, x, y, labeled, novel)
    # in eval mode the block's rows are independent; the prefix's batch statistics do not
    # depend on theta, so train-mode BatchNorm there is fine
    backbone.blocks[0][1].eval()
    probe = Probe({"block": backbone.blocks[0]}, attribution=True)
    record = toy_step(probe, backbone, head, x, y, labeled, novel)
    assert record["attribution"]["unsup_rows"]["sum"] == pytest.approx(
        record["raw"]["block"]["cos"]
    )


def test_group_reaching_loss_outside_features_is_refused():
    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch()
    probe = Probe([*backbone.parameters(), *head.parameters()], attribution=True)
    with pytest.raises(EntangleValueError, match="do not reach features"):
        toy_step(probe, backbone, head, x, y, labeled, novel)


def test_check_needs_a_graph():
    with pytest.raises(EntangleValueError, match="no autograd graph"):
        check_rows_independent(torch.zeros(3, 2), [torch.zeros(2, requires_grad=True)])


class AttentionBackbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(6, 6)])

    def forward(self, x):
        h = self.blocks[0](x).reshape(x.shape[0], 1, 3, 2)
        return torch.nn.functional.scaled_dot_product_attention(h, h, h).reshape(x.shape[0], 6)


def test_fused_attention_gets_a_clear_error_and_the_math_context_works(monkeypatch):
    backbone = AttentionBackbone().double()
    head = torch.nn.Linear(6, 4).double()
    x, y, labeled, novel = toy_batch()
    probe = Probe({"block": backbone.blocks[0]}, attribution=True)
    with probe.attribution_forward():
        record = toy_step(probe, backbone, head, x, y, labeled, novel)
    assert record["attribution"]["closure"] == pytest.approx(1.0, rel=1e-6)

    def no_double_backward(*args, **kwargs):
        raise RuntimeError("derivative for aten::fused_attention_backward is not implemented")

    monkeypatch.setattr(torch.autograd, "grad", no_double_backward)
    jac_probe = Probe({"block": backbone.blocks[0]}, attribution=True)
    z = backbone(x)
    with pytest.raises(EntangleRuntimeError, match="attribution_forward"):
        jac_probe.attributor.prepare(z, 0)


def test_math_attention_switches_only_graph_building_calls(monkeypatch):
    chosen = []
    real = torch.nn.attention.sdpa_kernel

    def spy(backends, *args, **kwargs):
        chosen.append(backends)
        return real(backends, *args, **kwargs)

    monkeypatch.setattr(torch.nn.attention, "sdpa_kernel", spy)
    q = torch.randn(2, 1, 3, 2, requires_grad=True)
    with math_attention():
        torch.nn.functional.scaled_dot_product_attention(q.detach(), q.detach(), q.detach())
        assert chosen == []  # a frozen block keeps its fused kernel
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert len(chosen) == 1
