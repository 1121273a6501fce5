"""The Probe's parts interface: hook order, one owner per state, the public step/epoch setters."""

import pytest
import torch

from entangle import EAGC, Probe
from entangle.errors import EntangleValueError
from entangle.probing.measurements import Measurement


def _model_and_losses(seed=0):
    torch.manual_seed(seed)
    backbone = torch.nn.Linear(6, 4)
    head = torch.nn.Linear(4, 3)
    x = torch.randn(8, 6)
    labeled = torch.arange(8) < 4

    def losses(z):
        logits = head(z)
        y = torch.arange(8) % 3
        sup = torch.nn.functional.cross_entropy(logits[labeled], y[labeled])
        unsup = logits[~labeled].logsumexp(1).mean()
        return sup, unsup, logits

    return backbone, head, x, labeled, losses


class Recorder(Measurement):
    """A part that logs its hook calls and writes one device-side entry."""

    keys = frozenset({"planted"})

    def __init__(self):
        self.calls = []

    def before_backward(self, step):
        self.calls.append(("before_backward", step))

    def supervised(self, ps):
        self.calls.append(("supervised", ps.step))

    def prepare(self, ps):
        self.calls.append(("prepare", ps.step))

    def measure(self, ps, record):
        self.calls.append(("measure", ps.step))
        # the feature gradients the core took: g_S + g_U is the training feature gradient
        record["planted"] = (ps.g_s + ps.g_u).square().sum()

    def finish(self, record):
        self.calls.append(("finish", record["step"]))


def test_a_new_measurement_is_one_small_class_and_runs_on_probed_steps_only():
    backbone, head, x, labeled, losses = _model_and_losses()
    probe = Probe(backbone, every=2)
    part = probe.add_measurement(Recorder())
    records = []
    for _ in range(3):
        z = backbone(x)
        sup, unsup, logits = losses(z)
        # independent: the training feature gradient by autograd directly
        (total,) = torch.autograd.grad(sup + unsup, z, retain_graph=True)
        records.append(probe.backward(sup, unsup, features=z, labeled=labeled))
        if records[-1] is not None:
            expected = total.square().sum().item()
            assert records[-1]["planted"] == pytest.approx(expected, rel=1e-5)
            assert isinstance(records[-1]["planted"], float)  # through the one host sync
    assert records[1] is None
    hooks = ["before_backward", "supervised", "prepare", "measure", "finish"]
    assert part.calls == [(h, 0) for h in hooks] + [(h, 2) for h in hooks]


def test_a_part_whose_keys_clash_is_refused_and_extra_cannot_overwrite_it():
    backbone, *_ = _model_and_losses()
    probe = Probe(backbone)

    class Clash(Measurement):
        keys = frozenset({"raw"})

    with pytest.raises(EntangleValueError, match="raw"):
        probe.add_measurement(Clash())
    with pytest.raises(EntangleValueError, match="Measurement"):
        probe.add_measurement(object())
    probe.add_measurement(Recorder())
    backbone, _, x, labeled, losses = _model_and_losses()
    z = backbone(x)
    sup, unsup, _ = losses(z)
    with pytest.raises(EntangleValueError, match="planted"):
        probe.backward(sup, unsup, extra={"planted": 1.0})


def test_step_and_epoch_are_set_through_public_methods_and_the_attribute_form():
    backbone, _, x, labeled, losses = _model_and_losses()
    probe = Probe(backbone, every=5)
    probe.set_step(10)
    probe.epoch = 3  # the README loop's form
    assert probe.is_due() and probe.calls == 10 and probe.epoch == 3
    z = backbone(x)
    sup, unsup, _ = losses(z)
    record = probe.backward(sup, unsup)
    assert (record["step"], record["epoch"], probe.calls) == (10, 3, 11)
    probe.calls = 0
    probe.set_epoch(None)
    assert probe.calls == 0 and probe.epoch is None
    with pytest.raises(EntangleValueError, match="non-negative"):
        probe.set_step(-1)


def test_the_probe_leaves_eagc_state_as_it_found_it():
    backbone, _, x, labeled, losses = _model_and_losses()
    eagc = EAGC.from_features(torch.randn(32, 4), aperture=2.0)
    probe = Probe(backbone, eagc=eagc)
    z = eagc.coordinate(backbone(x), labeled)
    state = eagc.state_for(z)
    sup, unsup, _ = losses(z)
    record = probe.backward(sup, unsup, features=z, labeled=labeled)
    assert "eagc" in record and "feature_eagc" in record
    assert state.mode == "full"  # measuring() restored the training mode


def test_eagc_measuring_restores_the_mode_on_an_exception_and_refuses_unknown_modes():
    eagc = EAGC.from_features(torch.randn(32, 4), aperture=2.0)
    z = eagc.coordinate(torch.randn(8, 4, requires_grad=True), torch.arange(8) < 4)
    state = eagc.state_for(z)
    with pytest.raises(ZeroDivisionError):
        with eagc.measuring(state, "identity"):
            assert state.mode == "identity"
            raise ZeroDivisionError
    assert state.mode == "full"
    with pytest.raises(EntangleValueError, match="unknown coordination mode"):
        with eagc.measuring(state, "half"):
            pass
    with eagc.measuring(None, "identity"):  # no EAGC on this step: nothing to switch
        pass
