"""Conceptor, energy ratio and free energy against numpy/scipy, and on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entangle.data.synthetic import planted_features
from entangle.errors import EntangleValueError, EntangleWarning
from entangle.metrics import conceptor, conceptor_spectrum, energy_ratio, free_energy
from entangle.metrics.energy import warn_if_identity_like


def conceptor_reference(z: np.ndarray, aperture: float) -> np.ndarray:
    z = z.astype(np.float64)
    r = z.T @ z / z.shape[0]
    return r @ np.linalg.inv(r + aperture**-2 * np.eye(z.shape[1]))


def energy_reference(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    return np.clip(np.einsum("nd,de,ne->n", z, c, z) / (z**2).sum(1), 0.0, 1.0)


@pytest.mark.parametrize("aperture", [0.5, 2.0, 10.0])
def test_conceptor_matches_numpy_inverse(aperture):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8)) * 0.3
    c = conceptor(torch.from_numpy(z), aperture)
    assert c.shape == (8, 8) and c.dtype == torch.float64
    np.testing.assert_allclose(c.numpy(), conceptor_reference(z, aperture), atol=1e-10)
    np.testing.assert_allclose(c.numpy(), c.numpy().T, atol=0)
    evals = np.linalg.eigvalsh(c.numpy())
    assert evals.min() >= -1e-12 and evals.max() < 1.0


def test_energy_ratio_matches_numpy():
    rng = np.random.default_rng(1)
    known = rng.standard_normal((50, 6)) * np.array([3, 2, 1, 0.1, 0.1, 0.1])
    c = conceptor(torch.from_numpy(known), 2.0)
    z = rng.standard_normal((20, 6))
    got = energy_ratio(torch.from_numpy(z), c)
    np.testing.assert_allclose(got.numpy(), energy_reference(z, c.numpy()), atol=1e-12)
    # rows inside the known directions carry more energy than rows outside them
    inside = energy_ratio(torch.eye(6, dtype=torch.float64)[:3], c)
    outside = energy_ratio(torch.eye(6, dtype=torch.float64)[3:], c)
    assert inside.min() > outside.max()


def test_conceptor_spectrum_matches_numpy():
    rng = np.random.default_rng(2)
    c = conceptor(torch.from_numpy(rng.standard_normal((40, 5)) * [2, 1, 0.5, 0.1, 0.01]), 2.0)
    spec = conceptor_spectrum(c)
    evals = np.sort(np.linalg.eigvalsh(c.numpy()))[::-1]
    np.testing.assert_allclose(spec["eigenvalues"].numpy(), evals, atol=1e-12)
    assert spec["quota"] == pytest.approx(np.trace(c.numpy()) / 5)
    p = evals / evals.sum()
    assert spec["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    zero = conceptor_spectrum(torch.zeros(3, 3))
    assert zero["quota"] == 0.0 and zero["effective_rank"] == 0.0


def test_near_identity_conceptor_warns():
    z = torch.randn(200, 4, dtype=torch.float64)
    warn_if_identity_like(conceptor(z, aperture=0.5))  # quota ~ 0.2: silent
    with pytest.warns(EntangleWarning, match="close to the identity"):
        warn_if_identity_like(conceptor(z, aperture=100.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_energy_ratio_rises_monotonically_with_planted_overlap(seed):
    means = []
    for t in [0.0, 0.25, 0.5, 0.75, 1.0]:
        x, _, novel = planted_features(overlap=t, seed=seed)
        c = conceptor(torch.from_numpy(x[~novel]), 2.0)
        means.append(float(energy_ratio(torch.from_numpy(x[novel]), c).mean()))
    assert np.all(np.diff(means) > 0), means
    assert means[0] < 1e-5
    # the planted geometry makes the energy exactly proportional to t
    np.testing.assert_allclose(means, means[-1] * np.array([0, 0.25, 0.5, 0.75, 1]), atol=1e-5)


def test_zero_rows_give_nan_and_warn():
    c = conceptor(torch.randn(10, 3), 2.0)
    z = torch.randn(4, 3)
    z[1] = 0
    with pytest.warns(EntangleWarning, match="1 rows are all zero"):
        ratio = energy_ratio(z, c)
    assert torch.isnan(ratio[1]) and not torch.isnan(ratio[[0, 2, 3]]).any()
    assert torch.isnan(energy_ratio(z, c, warn=False)[1])


def test_bad_inputs_are_value_errors():
    z = torch.randn(10, 3)
    with pytest.raises(EntangleValueError, match="aperture"):
        conceptor(z, 0.0)
    with pytest.raises(EntangleValueError, match="no features"):
        conceptor(z[:0], 2.0)
    with pytest.raises(EntangleValueError, match="2-D"):
        conceptor(z[0], 2.0)
    c = conceptor(z, 2.0)
    with pytest.raises(EntangleValueError, match="same layer"):
        energy_ratio(torch.randn(4, 5), c)
    with pytest.raises(EntangleValueError, match="square"):
        energy_ratio(z, c[:2])
    with pytest.raises(EntangleValueError, match=r"\[n, K\]"):
        free_energy(torch.randn(5))
    with pytest.raises(EntangleValueError, match="temperature"):
        free_energy(torch.randn(5, 3), temperature=0.0)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 4.0])
def test_free_energy_matches_scipy(temperature):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((7, 5)) * 20  # large logits: logsumexp must not overflow
    got = free_energy(torch.from_numpy(logits), temperature)
    want = -temperature * scipy.special.logsumexp(logits / temperature, axis=1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_numpy_inputs_are_accepted():
    rng = np.random.default_rng(4)
    z, logits = rng.standard_normal((10, 3)), rng.standard_normal((10, 4))
    c = conceptor(z, 2.0)
    np.testing.assert_allclose(energy_ratio(z, c.numpy()).numpy(), energy_ratio(z, c).numpy())
    np.testing.assert_allclose(
        free_energy(logits).numpy(), -scipy.special.logsumexp(logits, axis=1), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gives_float32_close_to_float64(dtype):
    rng = np.random.default_rng(5)
    z = torch.from_numpy(rng.standard_normal((40, 6))).to(dtype)
    z64 = z.double().numpy()
    c = conceptor(z, 2.0)
    assert c.dtype == torch.float32
    np.testing.assert_allclose(c.numpy(), conceptor_reference(z64, 2.0), atol=1e-5)
    ratio = energy_ratio(z, c)
    assert ratio.dtype == torch.float32
    np.testing.assert_allclose(ratio.numpy(), energy_reference(z64, c.double().numpy()), atol=1e-5)
    logits = z[:, :4] * 10
    f = free_energy(logits)
    assert f.dtype == torch.float32
    want = -scipy.special.logsumexp(logits.double().numpy(), axis=1)
    np.testing.assert_allclose(f.numpy(), want, rtol=1e-5)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 15),
    dim=st.integers(1, 6),
    aperture=st.floats(0.1, 20.0),
    seed=st.integers(0, 2**16),
)
def test_energy_ratio_is_in_unit_interval(n, dim, aperture, seed):
    rng = np.random.default_rng(seed)
    c = conceptor(torch.from_numpy(rng.standard_normal((n, dim))), aperture)
    ratio = energy_ratio(torch.from_numpy(rng.standard_normal((5, dim))), c)
    assert bool(((ratio >= 0) & (ratio <= 1)).all())


def test_conceptor_factors_equal_the_matrix_route():
    # the probe set's Gram route against the eigh-based conceptor, energy_ratio, spectrum
    from entangle.metrics.energy import ConceptorFactors

    g = torch.Generator().manual_seed(3)
    # fewer rows than dims (rank-deficient R: the [N, N] Gram route), more, and fewer with
    # repeated and zero rows (directions whose singular value is 0 or rounding noise)
    for n, d, repeated in ((20, 48, False), (80, 12, False), (20, 48, True)):
        old = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d)
        if repeated:
            old[5:10] = old[0]
            old[10:12] = 0.0
        z = torch.randn(30, d, generator=g, dtype=torch.float64)
        z[4] = 0.0
        f = ConceptorFactors(old, 1.7)
        c = conceptor(old, 1.7)
        assert torch.allclose(f.matrix(), c, atol=1e-12)
        expected = energy_ratio(z, c, warn=False)
        got = f.energy_ratio(z)
        assert torch.isnan(got[4]) and torch.isnan(expected[4])
        assert torch.allclose(got, expected, atol=1e-12, equal_nan=True)
        spec, ref = f.spectrum(), conceptor_spectrum(c)
        assert torch.allclose(spec["eigenvalues"], ref["eigenvalues"], atol=1e-12)
        assert abs(spec["quota"] - ref["quota"]) < 1e-12
        assert abs(spec["effective_rank"] - ref["effective_rank"]) < 1e-9
