"""entangle.probing.checks: what a loop hands the Probe, one actionable message per mistake."""

from __future__ import annotations

import pytest
import torch

from entangle import EAGC
from entangle.errors import EntangleValueError
from entangle.metrics.energy import SIMGCD_LOGIT_TEMPERATURE
from entangle.probing import checks
from entangle.probing.measurements import Energies, Measurement


def _z(n=4, d=3):
    return torch.randn(n, d, requires_grad=True)


def test_check_features_gives_bool_masks_and_no_state_without_eagc():
    labeled, novel, state = checks.check_features(
        _z(), [1, 0, 0, 1], [0, 0, 1, 1], torch.zeros(4, 2), None
    )
    assert labeled.dtype == novel.dtype == torch.bool
    assert labeled.tolist() == [True, False, False, True] and state is None
    assert checks.check_features(_z(), None, None, None, None) == (None, None, None)
    assert checks.check_features(None, None, None, None, None) == (None, None, None)


@pytest.mark.parametrize(
    "features, labeled, logits, match",
    [
        (torch.zeros(4), None, None, r"\[n, D\], got shape \(4,\)"),
        (torch.zeros(4, 3), None, None, "does not require grad.*not a detached copy"),
        (_z(), [1, 0], None, r"labeled has shape \(2,\) but features have 4 rows"),
        (_z(), None, torch.zeros(3, 2), "logits have 3 rows but features 4"),
    ],
)
def test_check_features_refuses_what_does_not_fit(features, labeled, logits, match):
    with pytest.raises(EntangleValueError, match=match):
        checks.check_features(features, labeled, None, logits, None)


def test_check_features_with_eagc_needs_the_coordinated_tensor():
    eagc = EAGC(torch.eye(3, dtype=torch.float64) * 0.5, labeled_energy=0.5)
    with pytest.raises(EntangleValueError, match="needs features="):
        checks.check_features(None, None, None, None, eagc)
    with pytest.raises(EntangleValueError, match="not returned by eagc.coordinate"):
        checks.check_features(_z().double(), [1, 0, 0, 1], None, None, eagc)
    z = eagc.coordinate(_z().double(), torch.tensor([1, 0, 0, 1]).bool())
    _, _, state = checks.check_features(z, [1, 0, 0, 1], None, None, eagc)
    assert state is eagc.state_for(z) and state is not None


def test_refuse_clash_names_the_overwritten_keys():
    checks.refuse_clash({"mine": 1}, {"step", "raw"})
    with pytest.raises(EntangleValueError, match=r"\['raw', 'step'\]"):
        checks.refuse_clash({"step": 1, "raw": 2, "x": 3}, {"step", "raw"})


def test_attributor_for_reads_the_switch_and_the_group():
    w = torch.nn.Parameter(torch.zeros(2))
    groups = {"first": [w], "second": [w]}
    for off in (False, None, 0):
        assert checks.attributor_for(groups, off, None, False) is None
    assert checks.attributor_for(groups, True, None, False) is not None
    assert checks.attributor_for(groups, 3, "second", True) is not None
    with pytest.raises(EntangleValueError, match=r"'nope' is not a probed group.*'first'"):
        checks.attributor_for(groups, True, "nope", False)


def test_every_coordinator_and_temperature_checks():
    checks.check_every(1)
    with pytest.raises(EntangleValueError, match="positive integer, got 0"):
        checks.check_every(0)

    class Coordinator:
        params = [torch.nn.Parameter(torch.zeros(1))]

    checks.check_coordinator(None, None, {})
    checks.check_coordinator(Coordinator, None, {id(Coordinator.params[0]): 0})
    with pytest.raises(EntangleValueError, match="not both"):
        checks.check_coordinator(Coordinator, object(), {})
    with pytest.raises(EntangleValueError, match="must all be in the probed groups"):
        checks.check_coordinator(Coordinator, None, {})
    assert checks.temperature_of(None) == (SIMGCD_LOGIT_TEMPERATURE, "SimGCD default")
    assert checks.temperature_of(0.5) == (0.5, "given")
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(EntangleValueError, match="positive number"):
            checks.temperature_of(bad)


def test_check_measurement_takes_measurements_with_keys_of_their_own():
    class Mine(Measurement):
        keys = frozenset({"mine"})

    checks.check_measurement(Mine(), frozenset({"step"}))
    with pytest.raises(EntangleValueError, match="takes a Measurement, got dict"):
        checks.check_measurement({}, frozenset())
    clash = next(iter(Energies.keys))
    with pytest.raises(EntangleValueError, match=f"Mine would write .*'{clash}'"):
        Mine.keys = frozenset({clash})
        checks.check_measurement(Mine(), Energies.keys)
