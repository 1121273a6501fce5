"""Gradient conflict metrics against float64 numpy, on degenerate inputs, and as properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from entangle.errors import EntangleTypeError, EntangleValueError, EntangleWarning
from entangle.metrics import gdc, gradient_conflict, rowwise_cosine

PROPERTY = settings(max_examples=50, deadline=None)


def reference(s: np.ndarray, u: np.ndarray) -> dict:
    s, u = s.astype(np.float64).ravel(), u.astype(np.float64).ravel()
    ns, nu = np.linalg.norm(s), np.linalg.norm(u)
    t = s + u
    cos = s @ u / (ns * nu)
    return {
        "cos": cos,
        "gdc": 1.0 - s @ t / (ns * np.linalg.norm(t)),
        "norm_sup": ns,
        "norm_unsup": nu,
        "norm_ratio": nu / ns,
        "gms": 2 * ns * nu / (ns**2 + nu**2),
        "conflict": cos < 0,
    }


def _assert_matches(stats: dict, ref: dict, rtol: float = 1e-10) -> None:
    assert set(stats) == set(ref)
    for key, want in ref.items():
        got = stats[key]
        assert got.ndim == 0, key
        if key == "conflict":
            assert bool(got) == want
        else:
            np.testing.assert_allclose(float(got), want, rtol=rtol, atol=rtol, err_msg=key)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_gradient_conflict_matches_numpy(shape):
    rng = np.random.default_rng(1)
    for _ in range(5):
        s, u = rng.standard_normal(shape), rng.standard_normal(shape)
        stats = gradient_conflict(torch.from_numpy(s), torch.from_numpy(u))
        _assert_matches(stats, reference(s, u))


def test_docstring_example_and_gdc_helper():
    s, u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    stats = gradient_conflict(s, u)
    assert round(stats["cos"].item(), 4) == -0.7071 and bool(stats["conflict"])
    # g_S + g_U = (0, 1) is orthogonal to g_S: GDC = 1
    assert gdc(s, u).item() == pytest.approx(1.0)
    assert gdc(s, s).item() == pytest.approx(0.0, abs=1e-7)


def test_per_parameter_lists_with_none_entries():
    rng = np.random.default_rng(2)
    a, b, c, d = (rng.standard_normal(shape) for shape in [(3, 2), (4,), (3, 2), (5,)])
    t = torch.from_numpy
    # parameter 1 reached only by L_sup, parameter 2 only by L_unsup, parameter 3 by neither
    g_sup = [t(a), t(b), None, None]
    g_unsup = [t(c), None, t(d), None]
    want = reference(
        np.concatenate([a.ravel(), b, np.zeros(5)]), np.concatenate([c.ravel(), np.zeros(4), d])
    )
    _assert_matches(gradient_conflict(g_sup, g_unsup), want)
    _assert_matches(gradient_conflict(tuple(g_sup), tuple(g_unsup)), want)


def test_mismatched_gradients_are_errors():
    with pytest.raises(EntangleValueError, match="differ in size"):
        gradient_conflict(torch.ones(3), torch.ones(4))
    with pytest.raises(EntangleTypeError, match="both"):
        gradient_conflict(torch.ones(3), [torch.ones(3)])
    with pytest.raises(EntangleValueError, match="differ in length"):
        gradient_conflict([torch.ones(3)], [torch.ones(3), None])
    with pytest.raises(EntangleValueError, match="parameter 0"):
        gradient_conflict([torch.ones(3)], [torch.ones(1, 3)])


def test_zero_gradient_gives_nan_and_a_warning():
    s = torch.tensor([1.0, 2.0, 3.0])
    with pytest.warns(EntangleWarning, match="g_unsup has zero norm; cos is NaN"):
        stats = gradient_conflict(s, torch.zeros(3))
    assert torch.isnan(stats["cos"]) and stats["gms"].item() == 0.0
    assert stats["norm_ratio"].item() == 0.0 and stats["gdc"].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.warns(EntangleWarning, match="g_sup has zero norm; cos, GDC and norm_ratio"):
        stats = gradient_conflict(torch.zeros(3), s)
    assert all(torch.isnan(stats[k]) for k in ("cos", "gdc", "norm_ratio"))
    assert not bool(stats["conflict"])  # NaN is never counted as a conflict
    with pytest.warns(EntangleWarning, match="g_sup and g_unsup have zero norm"):
        stats = gradient_conflict(torch.zeros(3), torch.zeros(3))
    assert torch.isnan(stats["gms"])


def test_cancelling_losses_and_empty_groups_warn():
    s = torch.tensor([1.0, -2.0])
    with pytest.warns(EntangleWarning, match="cancel"):
        assert torch.isnan(gdc(s, -s))
    with pytest.warns(EntangleWarning, match="no gradient entries"):
        stats = gradient_conflict([None, None], [None, None])
    assert torch.isnan(stats["cos"])
    with pytest.warns(EntangleWarning, match="not finite"):
        gradient_conflict(s, torch.tensor([float("inf"), 0.0]))


def test_warn_false_is_silent():
    # pytest turns warnings into errors, so reaching the assertion proves silence
    stats = gradient_conflict(torch.zeros(3), torch.zeros(3), warn=False)
    assert torch.isnan(stats["cos"])
    assert torch.isnan(rowwise_cosine(torch.zeros(2, 3), torch.ones(2, 3), warn=False)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gives_float32_close_to_float64(dtype):
    rng = np.random.default_rng(3)
    s, u = rng.standard_normal(1000), rng.standard_normal(1000) - 0.3 * rng.standard_normal(1000)
    s_h, u_h = torch.from_numpy(s).to(dtype), torch.from_numpy(u).to(dtype)
    stats = gradient_conflict(s_h, u_h)
    assert stats["cos"].dtype == torch.float32
    # compare with float64 on the same rounded inputs: only accumulation error remains
    _assert_matches(stats, reference(s_h.double().numpy(), u_h.double().numpy()), rtol=1e-5)


def test_rowwise_cosine_matches_numpy_and_flags_zero_rows():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    want = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    got = rowwise_cosine(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(rowwise_cosine(a, b).numpy(), want, rtol=1e-12)  # numpy in
    a[2] = 0.0
    with pytest.warns(EntangleWarning, match="1 of 6 rows"):
        got = rowwise_cosine(torch.from_numpy(a), torch.from_numpy(b))
    assert torch.isnan(got[2]) and not torch.isnan(got[[0, 1, 3, 4, 5]]).any()
    half = rowwise_cosine(torch.from_numpy(b).half(), torch.from_numpy(b).bfloat16())
    assert half.dtype == torch.float32
    np.testing.assert_allclose(half.numpy(), 1.0, atol=1e-2)


def test_rowwise_cosine_rejects_bad_shapes():
    with pytest.raises(EntangleValueError, match=r"\[n, D\]"):
        rowwise_cosine(torch.ones(3, 2), torch.ones(2, 3))
    with pytest.raises(EntangleValueError):
        rowwise_cosine(torch.ones(3), torch.ones(3))


_VECTORS = arrays(
    np.float64,
    st.integers(2, 12),
    elements=st.floats(-10, 10, allow_nan=False, allow_subnormal=False),
)


def _nonzero(x: np.ndarray) -> bool:
    return np.linalg.norm(x) > 1e-3


@PROPERTY
@given(
    data=st.data(),
    a=st.floats(1e-3, 1e3),
    b=st.floats(1e-3, 1e3),
)
def test_cosine_is_invariant_to_positive_scaling(data, a, b):
    s = data.draw(_VECTORS.filter(_nonzero))
    u = data.draw(arrays(np.float64, s.shape, elements=st.floats(-10, 10)).filter(_nonzero))
    s_t, u_t = torch.from_numpy(s), torch.from_numpy(u)
    base = gradient_conflict(s_t, u_t)
    scaled = gradient_conflict(a * s_t, b * u_t)
    assert float(scaled["cos"]) == pytest.approx(float(base["cos"]), abs=1e-9)
    assert bool(scaled["conflict"]) == bool(base["conflict"]) or abs(float(base["cos"])) < 1e-9
    # GDC depends on the ratio of the norms, so only a common scale leaves it unchanged
    common = gradient_conflict(a * s_t, a * u_t)
    assert float(common["gdc"]) == pytest.approx(float(base["gdc"]), abs=1e-7)


@PROPERTY
@given(data=st.data())
def test_bounded_ranges(data):
    s = data.draw(_VECTORS.filter(_nonzero))
    u = data.draw(arrays(np.float64, s.shape, elements=st.floats(-10, 10)).filter(_nonzero))
    assume(np.linalg.norm(s + u) > 1e-3)
    stats = gradient_conflict(torch.from_numpy(s), torch.from_numpy(u))
    assert -1.0 <= float(stats["cos"]) <= 1.0
    assert 0.0 <= float(stats["gdc"]) <= 2.0
    assert 0.0 <= float(stats["gms"]) <= 1.0
    assert float(stats["norm_ratio"]) >= 0.0


def test_gdc_near_cancellation_matches_float64():
    # ||g_S + g_U|| = 1e-4 ||g_S|| in float32: the expanded norm of the sum lost every digit
    g = torch.Generator().manual_seed(0)
    s = torch.randn(20000, generator=g)
    u = -(1 - 1e-4) * s + 1e-4 * torch.randn(20000, generator=g)
    s64, u64 = s.double(), u.double()
    want = 1 - torch.nn.functional.cosine_similarity(s64, s64 + u64, dim=0)
    got = gradient_conflict(s, u, warn=False)["gdc"]
    assert float(got) == pytest.approx(float(want), abs=1e-3)
