"""GCD v2 clustering accuracy against a direct scipy Hungarian computation, and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from entangle.errors import EntangleValueError, EntangleWarning
from entangle.metrics import cluster_accuracy, hungarian_mapping


def accuracy_reference(y_true, y_pred, old_mask):
    """Contingency over the distinct ids, one min-cost assignment, All/Old/New from it."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    cost = np.zeros((len(clusters), len(classes)))
    for p, t in zip(y_pred, y_true, strict=True):
        cost[np.searchsorted(clusters, p), np.searchsorted(classes, t)] -= 1
    rows, cols = linear_sum_assignment(cost)
    mapping = {clusters[r]: classes[c] for r, c in zip(rows, cols, strict=True)}
    hit = np.array([mapping.get(p, -1) == t for p, t in zip(y_pred, y_true, strict=True)])
    old_mask = np.asarray(old_mask, bool)
    return hit.mean(), hit[old_mask].mean(), hit[~old_mask].mean()


def unique_hits(y_true, y_pred) -> bool:
    """True when every optimal assignment matches the same samples (no tie to break)."""
    _, p = np.unique(y_pred, return_inverse=True)
    _, t = np.unique(y_true, return_inverse=True)
    gain = np.zeros((p.max() + 1, t.max() + 1))
    np.add.at(gain, (p, t), 1)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    best = gain[rows, cols].sum()
    for r, c in zip(rows, cols, strict=True):
        if gain[r, c] == 0:
            continue
        forbidden = gain.copy()
        forbidden[r, c] = -len(y_true)  # an optimum without this pair, if one exists
        rr, cc = linear_sum_assignment(forbidden, maximize=True)
        if forbidden[rr, cc].sum() == best:
            return False
    return True


def _random_case(rng, n, n_classes, n_clusters, n_old):
    y_true = rng.integers(0, n_classes, n)
    # predictions agree with the truth on a random share of samples, else random clusters
    y_pred = np.where(rng.random(n) < 0.6, y_true % n_clusters, rng.integers(0, n_clusters, n))
    y_true[:n_classes] = np.arange(n_classes)  # every class present, both groups non-empty
    return y_true, y_pred, y_true < n_old


@pytest.mark.parametrize("n_clusters", [3, 6, 9])
def test_matches_direct_linear_sum_assignment(n_clusters):
    rng = np.random.default_rng(n_clusters)
    n_unique = 0
    for _ in range(20):
        y_true, y_pred, old = _random_case(rng, 80, 6, n_clusters, 3)
        got = cluster_accuracy(y_true, y_pred, old)
        want = accuracy_reference(y_true, y_pred, old)
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        # under a tie, which optimum the solver picks decides Old/New; compare them otherwise
        if unique_hits(y_true, y_pred):
            n_unique += 1
            np.testing.assert_allclose(got, want, rtol=1e-12)
    assert n_unique >= 10


def test_one_mapping_for_all_classes_not_one_per_group():
    # cluster 0 holds two old samples and three new ones; one global assignment gives it to
    # the new class 1, so the old class gets no cluster: a per-group mapping would say old=1
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.zeros(5, dtype=int)
    acc_all, acc_old, acc_new = cluster_accuracy(y_true, y_pred, y_true == 0)
    assert (acc_all, acc_old, acc_new) == (0.6, 0.0, 1.0)
    assert hungarian_mapping(y_true, y_pred) == {0: 1}


def test_perfect_clustering_under_any_naming_is_one():
    y_true = np.repeat(np.arange(5), 4)
    y_pred = (y_true * 7 + 3) % 11  # an injective renaming of the classes
    assert cluster_accuracy(y_true, y_pred, y_true < 2) == (1.0, 1.0, 1.0)


def test_large_cluster_ids_do_not_blow_up_memory():
    # cluster ids are "any non-negative integers": hash-like ids must not size a dense matrix
    y_true = np.repeat(np.arange(3), 5)
    y_pred = np.repeat(np.array([10**12, 7, 10**15]), 5)
    assert cluster_accuracy(y_true, y_pred, y_true < 2) == (1.0, 1.0, 1.0)
    assert hungarian_mapping(y_true, y_pred) == {10**12: 0, 7: 1, 10**15: 2}


def test_tensors_are_accepted():
    rng = np.random.default_rng(0)
    y_true, y_pred, old = _random_case(rng, 50, 4, 5, 2)
    got = cluster_accuracy(
        torch.from_numpy(y_true), torch.from_numpy(y_pred), torch.from_numpy(old)
    )
    assert got == cluster_accuracy(y_true, y_pred, old)


def test_empty_group_gives_nan_and_warns():
    y = np.array([0, 1, 1, 0])
    with pytest.warns(EntangleWarning, match="no new-class samples"):
        acc_all, acc_old, acc_new = cluster_accuracy(y, y, np.ones(4, bool))
    assert acc_all == acc_old == 1.0 and np.isnan(acc_new)
    with pytest.warns(EntangleWarning, match="no old-class samples"):
        assert np.isnan(cluster_accuracy(y, y, np.zeros(4, bool))[1])


def test_bad_inputs_are_value_errors():
    y = np.array([0, 1, 2])
    with pytest.raises(EntangleValueError, match="same length"):
        cluster_accuracy(y, y[:2], y < 1)
    with pytest.raises(EntangleValueError, match="1-D"):
        cluster_accuracy(y[None], y, y < 1)
    with pytest.raises(EntangleValueError, match=">= 0"):
        cluster_accuracy(y, y - 1, y < 1)
    with pytest.raises(EntangleValueError, match="no samples"):
        cluster_accuracy(y[:0], y[:0], y[:0] < 1)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(6, 60),
    n_clusters=st.integers(1, 8),
)
def test_invariant_to_renaming_the_predicted_clusters(seed, n, n_clusters):
    rng = np.random.default_rng(seed)
    y_true, y_pred, old = _random_case(rng, n, 4, n_clusters, 2)
    renamed = rng.permutation(n_clusters + 5)[y_pred]  # a bijection onto other ids
    base = cluster_accuracy(y_true, y_pred, old)
    again = cluster_accuracy(y_true, renamed, old)
    assert again[0] == base[0]
    if unique_hits(y_true, y_pred):  # a tie may be broken differently after renaming
        assert again == base
    assert all(0.0 <= a <= 1.0 for a in base)
