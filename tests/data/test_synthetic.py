"""Planted features: shapes, labels, the planted geometry, determinism and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from entangle.data.synthetic import planted_features
from entangle.errors import EntangleTypeError, EntangleValueError


def _basis(x: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal basis ``[D, k]`` of the span of ``x``'s rows (not centred)."""
    _, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    assert s[k] < 1e-5 * s[0], "rows span more than k dimensions"
    return vt[:k].T


def test_shapes_dtypes_and_labels():
    x, y, novel = planted_features(n_old_classes=3, n_new_classes=2, per_class=7, dim=10)
    assert x.shape == (35, 10) and x.dtype == np.float32
    assert y.dtype == np.int64 and novel.dtype == bool
    np.testing.assert_array_equal(np.bincount(y), [7] * 5)
    np.testing.assert_array_equal(novel, y >= 3)  # old classes first, novel after


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_planted_subspaces_meet_at_arccos_sqrt_t(t):
    x, _, novel = planted_features(overlap=t, subspace_dim=3, dim=12, seed=5)
    old, new = _basis(x[~novel], 3), _basis(x[novel], 3)
    angles = scipy.linalg.subspace_angles(old, new)
    np.testing.assert_allclose(angles, np.arccos(np.sqrt(t)), atol=1e-4)


def test_old_classes_do_not_depend_on_overlap_and_seed_repeats():
    a = planted_features(overlap=0.1, seed=3)
    b = planted_features(overlap=0.9, seed=3)
    np.testing.assert_array_equal(a[0][~a[2]], b[0][~b[2]])
    # the novel rows keep their coefficients: only the subspace they live in turns, so norms match
    np.testing.assert_allclose(
        np.linalg.norm(a[0][a[2]], axis=1), np.linalg.norm(b[0][b[2]], axis=1), rtol=1e-5
    )
    for got, want in zip(planted_features(overlap=0.1, seed=3), a, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(planted_features(seed=4)[0], a[0])


def test_spread_controls_the_within_class_scatter():
    tight = planted_features(spread=0.0, per_class=5)[0]
    # spread 0: every sample of a class is its mean
    assert np.ptp(tight.reshape(10, 5, -1), axis=1).max() == 0.0
    loose = planted_features(spread=0.5, per_class=50)[0].reshape(10, 50, -1)
    scatter = np.linalg.norm(loose - loose.mean(axis=1, keepdims=True), axis=2)
    # isotropic noise of std 0.5 in a 4-d subspace: RMS distance to the mean is 0.5 * sqrt(4)
    assert np.sqrt((scatter**2).mean()) == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": 7, "subspace_dim": 4}, EntangleValueError, "at least 2 \\* subspace_dim = 8"),
        ({"overlap": 1.5}, EntangleValueError, "overlap must lie in \\[0.0, 1.0\\]"),
        ({"overlap": float("nan")}, EntangleValueError, "overlap"),
        ({"spread": -0.1}, EntangleValueError, "spread"),
        ({"n_new_classes": 0}, EntangleValueError, "n_new_classes must be >= 1"),
        ({"per_class": 2.5}, EntangleTypeError, "per_class must be an int"),
        ({"subspace_dim": True}, EntangleTypeError, "subspace_dim"),
        ({"seed": -1}, EntangleValueError, "seed"),
        ({"overlap": "half"}, EntangleTypeError, "overlap must be a number"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        planted_features(**kwargs)
