"""The host-sync budget of the training step, held on the CPU (docs/reliability.md).

Under :class:`BlockingOps` every aten op that would make the host wait for a CUDA device is
counted: ``EAGC.coordinate`` and a non-probed step may make none; a probed step none besides
its one device-to-host transfer (``to_host``, which a CPU tensor performs without an op).
"""

from __future__ import annotations

import pytest
import torch

from entangle.bench.syncaudit import BlockingOps
from entangle.eagc import EAGC
from entangle.gcd.losses import LossConfig, gcd_losses
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead
from entangle.probing.params import last_block
from entangle.probing.probe import Probe


@pytest.mark.parametrize(
    ("kind", "op"),
    [
        ("nonzero", lambda x: x.nonzero()),
        ("item", lambda x: x.sum().item()),
        ("item", lambda x: bool(x.sum() > 0)),
        ("boolean-mask index", lambda x: x[x > 0]),
        ("boolean-mask index_put", lambda x: x.clone().__setitem__(x > 0, 1.0)),
        ("masked_select", lambda x: torch.masked_select(x, x > 0)),
        ("tensor from Python data", lambda x: torch.tensor([0.1, 0.5], device=x.device)),
        ("equal", lambda x: torch.equal(x, x)),
        ("allclose", lambda x: torch.allclose(x, x)),
        ("unique", lambda x: torch.unique(x)),
    ],
)
def test_each_blocking_op_is_counted(kind, op):
    x = torch.randn(8)
    with BlockingOps() as ops:
        op(x)
    assert ops.counts[kind] >= 1, dict(ops.counts)


def test_device_side_ops_are_not_counted():
    x = torch.randn(8)
    with BlockingOps() as ops:
        m = x > 0
        torch.where(m, x, 0.0).sum()
        x[torch.arange(4)]  # an integer index has a known size
        torch.nanquantile(x, torch.ones(2) / 2)
        torch.zeros(3).add_(1.0)
    assert not ops.counts, dict(ops.counts)


@pytest.fixture
def step():
    """One SimGCD training step of the recipe's loop (EAGC + Probe), tiny models."""
    torch.manual_seed(0)
    backbone, reference = ResidualMLP(16, 16, 2), ResidualMLP(16, 16, 2)
    head = GCDHead(16, 6, hidden_dim=16, proj_dim=8)
    views = torch.randn(32, 16)  # two views of 16 samples
    labeled1 = torch.arange(16) % 2 == 0
    labels = torch.arange(16) % 6
    labeled, novel = labeled1.repeat(2), ((labels >= 4) & ~labeled1).repeat(2)
    eagc = EAGC.fit(reference, [views[labeled]], aperture=2.0)
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    probe = Probe({"last_block": last_block(backbone), "all": params}, every=2, eagc=eagc)

    def run(probed: bool) -> BlockingOps:
        probe.set_step(0 if probed else 1)
        with BlockingOps() as ops:
            z = eagc.coordinate(backbone(views), labeled, reference(views).detach())
            proj, logits = head(z)
            sup, unsup, _ = gcd_losses(proj, logits, labels, labeled1, epoch=0, config=LossConfig())
            probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits)
        return ops

    run.probe = probe
    return run, eagc, backbone, reference, views, labeled


def test_coordinate_never_blocks(step):
    _, eagc, backbone, reference, views, labeled = step
    with BlockingOps() as ops:
        z = eagc.coordinate(backbone(views), labeled, reference(views).detach())
        z.square().sum().backward()
    assert dict(ops.counts) == {}


def test_a_non_probed_step_never_blocks(step):
    run = step[0]
    assert dict(run(probed=False).counts) == {}


def test_a_probed_step_blocks_only_for_its_one_transfer(step, monkeypatch):
    run = step[0]
    run(probed=True)  # first use puts constants (the quantile levels) on the device
    transfers = []
    real = run.probe.transfer  # the probe's one host-sync point
    monkeypatch.setattr(run.probe, "transfer", lambda t: transfers.append(1) or real(t))
    assert dict(run(probed=True).counts) == {}
    assert len(transfers) == 1
