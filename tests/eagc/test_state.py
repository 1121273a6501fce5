"""entangle.eagc.state: the transform of each mode against the formula written out by hand."""

from __future__ import annotations

import pytest
import torch

from entangle.eagc.state import CoordinationState, _Accumulation, _Coordinate, loss_scale


def _state(**kw) -> CoordinationState:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    values = dict(
        weights=torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),
        aga=torch.randn(3, 3, generator=g, dtype=torch.float64),
        conceptor=(a @ a.T) / 10,  # symmetric, as a conceptor is
        previous_weights=torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64),
        scale=4.0,
    )
    return CoordinationState(**(values | kw))


def _by_hand(state, grad, weights, aga):
    rows = [grad[i] - weights[i] * (state.conceptor @ grad[i]) for i in range(grad.shape[0])]
    out = torch.stack(rows)
    return out + state.aga * state.scale if aga else out


@pytest.mark.parametrize(
    "mode, weights, aga",
    [
        ("full", "weights", True),
        ("linear", "weights", False),
        ("authors", "previous_weights", True),
    ],
)
def test_transform_matches_the_row_by_row_formula(mode, weights, aga):
    state = _state()
    grad = torch.randn(3, 3, dtype=torch.float64)
    expected = _by_hand(state, grad, getattr(state, weights), aga)
    torch.testing.assert_close(state.transform(grad, mode), expected)


def test_identity_and_missing_parts_leave_the_gradient_alone():
    grad = torch.randn(3, 3, dtype=torch.float64)
    assert _state().transform(grad, "identity") is grad
    state = _state(weights=None, aga=None)
    torch.testing.assert_close(state.transform(grad), grad)
    # authors' mode on the first call (no previous weights) adds only the AGA term
    first = _state(previous_weights=None)
    torch.testing.assert_close(first.transform(grad, "authors"), grad + first.aga * 4.0)


def test_transform_keeps_the_gradient_dtype_and_uses_the_state_mode():
    state = _state(mode="linear")
    grad = torch.randn(3, 3, dtype=torch.float32)
    out = state.transform(grad)
    assert out.dtype == torch.float32
    expected = _by_hand(state, grad.double(), state.weights, aga=False).float()
    torch.testing.assert_close(out, expected)


def test_coordinate_is_identity_forward_and_transforms_backward_counting_calls():
    state = _state()
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    y = _Coordinate.apply(x, state)
    torch.testing.assert_close(y, x)
    upstream = torch.randn(3, 3, dtype=torch.float64)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, state.transform(upstream))
    assert state.fired == 1


def test_accumulation_sums_its_totals():
    acc = _Accumulation(micro_batches=2)
    assert acc.total is None
    acc.add(torch.tensor(1.5))
    acc.add(torch.tensor(2.0))
    assert acc.total.item() == 3.5 and acc.micro_batches == 2


def test_loss_scale_is_none_without_an_enabled_scaler_and_the_scale_with_one():
    assert loss_scale(None, "cpu") is None

    class Scaler:
        def __init__(self, enabled):
            self.enabled = enabled

        def is_enabled(self):
            return self.enabled

        def scale(self, t):
            return t * 1024.0

    assert loss_scale(Scaler(False), "cpu") is None
    scale = loss_scale(Scaler(True), "cpu")
    assert scale.ndim == 0 and scale.item() == 1024.0
