"""SOC and principal angles against numpy/scipy, on planted data, and as properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entangle.data.synthetic import planted_features
from entangle.errors import EntangleValueError, EntangleWarning
from entangle.metrics import principal_angles, soc

OVERLAPS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def soc_reference(old: np.ndarray, new: np.ndarray, k: int) -> float:
    old, new = _unit_rows(old.astype(np.float64)), _unit_rows(new.astype(np.float64))
    mu = old.mean(axis=0)
    _, _, vt = np.linalg.svd(old - mu, full_matrices=False)
    projector = vt[:k].T @ vt[:k]
    centred = new - mu
    return np.linalg.norm(centred @ projector) ** 2 / np.linalg.norm(centred) ** 2


def top_basis(x: np.ndarray, k: int) -> np.ndarray:
    x = _unit_rows(x.astype(np.float64))
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:k].T


def _split(overlap: float, seed: int = 0, **kw):
    x, _, novel = planted_features(overlap=overlap, seed=seed, **kw)
    return torch.from_numpy(x[~novel]), torch.from_numpy(x[novel])


def test_soc_matches_numpy_svd():
    rng = np.random.default_rng(0)
    for k in (1, 3, 8):
        old, new = rng.standard_normal((40, 10)) + 0.5, rng.standard_normal((25, 10))
        got = soc(torch.from_numpy(old), torch.from_numpy(new), k=k)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(float(got), soc_reference(old, new, k), rtol=1e-10)


def test_soc_with_the_full_space_is_one():
    rng = np.random.default_rng(1)
    old, new = torch.from_numpy(rng.standard_normal((30, 6))), torch.randn(9, 6, dtype=torch.double)
    assert float(soc(old, new, k=6)) == pytest.approx(1.0)


def test_principal_angles_match_scipy():
    rng = np.random.default_rng(2)
    a, b = (
        rng.standard_normal((50, 12)),
        rng.standard_normal((40, 12)) @ rng.standard_normal((12, 12)),
    )
    for k in (1, 4):
        got = principal_angles(torch.from_numpy(a), torch.from_numpy(b), k=k).numpy()
        want = np.sort(scipy.linalg.subspace_angles(top_basis(a, k), top_basis(b, k)))
        np.testing.assert_allclose(got, want, atol=1e-7)
        assert np.all(np.diff(got) >= 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soc_rises_monotonically_with_planted_overlap(seed):
    values = [float(soc(*_split(t, seed), k=4)) for t in OVERLAPS]
    assert np.all(np.diff(values) > 0), values
    assert values[0] < 0.05 and values[-1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("t", OVERLAPS)
def test_planted_principal_angles_are_arccos_sqrt_t(t):
    old, new = _split(t)
    angles = principal_angles(old.double(), new.double(), k=4)
    np.testing.assert_allclose(angles.numpy(), np.arccos(np.sqrt(t)), atol=1e-6)


def test_k_beyond_rank_gives_nan_and_warns():
    old, new = torch.randn(5, 8), torch.randn(6, 8)
    with pytest.warns(EntangleWarning, match="k=5 exceeds the rank 4"):
        assert torch.isnan(soc(old, new, k=5))
    with pytest.warns(EntangleWarning, match="exceeds the rank"):
        angles = principal_angles(torch.randn(20, 3), new[:, :3], k=4)
    assert angles.shape == (4,) and torch.isnan(angles).all()


def test_empty_sets_give_nan_and_warn():
    x = torch.randn(10, 4)
    with pytest.warns(EntangleWarning, match="no new"):
        assert torch.isnan(soc(x, x[:0], k=2))
    with pytest.warns(EntangleWarning, match="no old"):
        assert torch.isnan(soc(x[:0], x, k=2))


def test_bad_shapes_and_k_are_value_errors():
    x = torch.randn(10, 4)
    with pytest.raises(EntangleValueError, match="same layer"):
        soc(x, torch.randn(3, 5), k=2)
    with pytest.raises(EntangleValueError, match="2-D"):
        soc(x[0], x, k=2)
    with pytest.raises(EntangleValueError, match="positive"):
        soc(x, x, k=0)
    with pytest.raises(EntangleValueError, match="same layer"):
        principal_angles(x, torch.randn(10, 3), k=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gives_float32_close_to_float64(dtype):
    old, new = _split(0.4, per_class=30)
    old_h, new_h = old.to(dtype), new.to(dtype)
    got = soc(old_h, new_h, k=4)
    assert got.dtype == torch.float32
    want = soc_reference(old_h.double().numpy(), new_h.double().numpy(), 4)
    assert float(got) == pytest.approx(want, abs=1e-4)
    angles = principal_angles(old_h, new_h, k=4)
    assert angles.dtype == torch.float32
    np.testing.assert_allclose(angles.numpy(), np.arccos(np.sqrt(0.4)), atol=5e-3)


@settings(max_examples=50, deadline=None)
@given(
    n_old=st.integers(3, 20),
    n_new=st.integers(1, 20),
    dim=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-2, 1e2),
)
def test_soc_is_in_unit_interval_and_ignores_row_scale(n_old, n_new, dim, seed, scale):
    rng = np.random.default_rng(seed)
    k = min(n_old - 1, dim)
    old = torch.from_numpy(rng.standard_normal((n_old, dim)))
    new = torch.from_numpy(rng.standard_normal((n_new, dim)))
    value = float(soc(old, new, k=k))
    assert 0.0 <= value <= 1.0
    # rows are L2-normalised first, so rescaling any row changes nothing
    row_scale = torch.from_numpy(scale * rng.uniform(0.5, 2.0, (n_new, 1)))
    assert float(soc(old, new * row_scale, k=k)) == pytest.approx(value, abs=1e-9)


def test_soc_and_angles_equal_the_two_functions():
    from entangle.metrics.subspace import soc_and_angles

    g = torch.Generator().manual_seed(5)
    old = torch.randn(40, 24, generator=g, dtype=torch.float64)
    new = torch.randn(30, 24, generator=g, dtype=torch.float64) + old[:30] * 0.5
    value, angles = soc_and_angles(old, new, 6)
    assert torch.allclose(value, soc(old, new, 6), atol=1e-13)
    assert torch.allclose(angles, principal_angles(old, new, 6), atol=1e-10)
    # degenerate: k above the new set's rank -> NaN angles, SOC still defined
    value, angles = soc_and_angles(old, new[:4], 6)
    assert torch.allclose(value, soc(old, new[:4], 6, warn=False), atol=1e-13)
    assert torch.isnan(angles).all()
