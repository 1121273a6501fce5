"""entangle.eagc.checks: each refusal names what came and the fix; good inputs pass through."""

from __future__ import annotations

import pytest
import torch

from entangle.eagc.checks import check_inputs, check_scaling
from entangle.eagc.state import CoordinationState, _Coordinate
from entangle.errors import EntangleValueError


class _Scaler:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def is_enabled(self) -> bool:
        return self.enabled


def test_check_inputs_returns_the_mask_as_bool_on_the_features_device():
    c = torch.eye(3)
    labeled = check_inputs(c, torch.zeros(4, 3), [1, 0, 0, 1], None)
    assert labeled.dtype == torch.bool
    assert labeled.tolist() == [True, False, False, True]
    assert check_inputs(c, torch.zeros(2, 3), torch.tensor([0, 1]), torch.ones(2, 3)).sum() == 1


@pytest.mark.parametrize(
    "features, labeled, reference, match",
    [
        (torch.zeros(4), [1, 0, 0, 1], None, r"\[n, D\].*\(4,\)"),
        (torch.zeros(4, 2), [1, 0, 0, 1], None, r"\[3, 3\].*\(4, 2\).*fit the conceptor"),
        (torch.zeros(4, 3), [1, 0], None, r"\(2,\).*\(4, 3\).*one entry per row"),
        (torch.zeros(4, 3), [[1, 0, 0, 1]], None, r"\(1, 4\)"),
        (torch.zeros(4, 3), [1, 0, 0, 1], torch.zeros(4, 2), r"\(4, 2\).*same inputs"),
    ],
)
def test_check_inputs_refuses_what_does_not_fit(features, labeled, reference, match):
    with pytest.raises(EntangleValueError, match=match):
        check_inputs(torch.eye(3), features, labeled, reference)


def test_check_inputs_refuses_a_reference_on_another_device():
    reference = torch.zeros(2, 3, device="meta")
    with pytest.raises(EntangleValueError, match="meta.*same device"):
        check_inputs(torch.eye(3), torch.zeros(2, 3), [1, 0], reference)


def _coordinated(scaled: bool) -> torch.Tensor:
    state = CoordinationState(weights=None, aga=None, conceptor=torch.eye(2), scaled=scaled)
    return _Coordinate.apply(torch.ones(3, 2, requires_grad=True), state)


def test_check_scaling_refuses_a_scaler_given_to_one_side_only():
    with pytest.raises(EntangleValueError, match="given to probe.backward but not to eagc"):
        check_scaling(_coordinated(scaled=False), _Scaler(True))
    with pytest.raises(EntangleValueError, match="given to eagc.coordinate but not to probe"):
        check_scaling(_coordinated(scaled=True), None)
    # a disabled scaler is no scaling
    with pytest.raises(EntangleValueError, match="given to eagc.coordinate"):
        check_scaling(_coordinated(scaled=True), _Scaler(False))


def test_check_scaling_passes_matching_scaling_and_uncoordinated_features():
    check_scaling(_coordinated(scaled=True), _Scaler(True))
    check_scaling(_coordinated(scaled=False), None)
    check_scaling(torch.ones(3, 2, requires_grad=True) * 2, _Scaler(True))
    check_scaling(torch.ones(3, 2), _Scaler(True))
