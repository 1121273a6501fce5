"""GCD clustering accuracy (v1, v2, v2b) against direct scipy computations, and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from entangle.errors import EntangleValueError, EntangleWarning
from entangle.metrics import cluster_accuracy, hungarian_mapping
from entangle.metrics.clustering import accuracy_protocols, cluster_accuracies


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


# ---------------------------------------------------------------- the three protocols

# Planted predictions, worked by hand. Old classes 0, 1; new classes 2, 3.
# Contingency (cluster x class): c0 {0: 3, 2: 3}, c1 {0: 1, 1: 2}, c2 {2: 2}, c3 {3: 2}.
PLANTED_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3]
PLANTED_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 0, 2, 2, 3, 3]
PLANTED_WANT = {
    # split_cluster_acc_v1 in sgvaze/generalized-category-discovery
    # project_utils/cluster_and_log_utils.py: old and new each get their own assignment
    # (cluster 0 serves class 0 among old samples and class 2 among new ones); All is
    # weight * old + (1 - weight) * new with weight = share of old samples = 6/13
    "v1": (10 / 13, 5 / 6, 5 / 7),
    # split_cluster_acc_v2 (same file; CVMI-Lab/SimGCD util/cluster_and_log_utils.py):
    # one assignment 0->0, 1->1, 2->2, 3->3 matches 9 of 13 samples
    "v2": (9 / 13, 5 / 6, 4 / 7),
    # split_cluster_acc_v2_balanced in CVMI-Lab/SimGCD util/cluster_and_log_utils.py:
    # per-class recall under the v2 mapping, 3/4, 2/2, 2/5, 2/2; means over all/old/new
    "v2b": (0.7875, 0.875, 0.7),
}


@pytest.mark.parametrize("protocol", ["v1", "v2", "v2b"])
def test_planted_predictions_give_the_hand_worked_values(protocol):
    y = np.array(PLANTED_TRUE)
    got = cluster_accuracy(y, np.array(PLANTED_PRED), y < 2, protocol)
    np.testing.assert_allclose(got, PLANTED_WANT[protocol], rtol=1e-12)


def dense_assignment(y_true, y_pred):
    """The public codes' way: a (D x D) count matrix, D = max id + 1, min-cost on max - w."""
    d = max(y_pred.max(), y_true.max()) + 1
    w = np.zeros((d, d), dtype=int)
    for p, t in zip(y_pred, y_true, strict=True):
        w[p, t] += 1
    rows, cols = linear_sum_assignment(w.max() - w)
    return w, {int(c): int(r) for r, c in zip(rows, cols, strict=True)}  # class -> cluster


def reference_v1(y_true, y_pred, old):
    def acc(t, p):
        w, class_to_cluster = dense_assignment(t, p)
        return sum(w[r, c] for c, r in class_to_cluster.items()) / len(t)

    weight = old.mean()
    acc_old, acc_new = acc(y_true[old], y_pred[old]), acc(y_true[~old], y_pred[~old])
    return weight * acc_old + (1 - weight) * acc_new, acc_old, acc_new


def reference_v2b(y_true, y_pred, old):
    w, class_to_cluster = dense_assignment(y_true, y_pred)
    recall = {c: w[class_to_cluster[c], c] / w[:, c].sum() for c in np.unique(y_true)}
    old_classes, new_classes = set(y_true[old]), set(y_true[~old])
    mean = lambda cs: float(np.mean([recall[c] for c in cs]))  # noqa: E731
    return mean(old_classes | new_classes), mean(old_classes), mean(new_classes)


def reference_v2(y_true, y_pred, old):
    w, class_to_cluster = dense_assignment(y_true, y_pred)
    cluster_to_class = {r: c for c, r in class_to_cluster.items()}
    hit = np.array([cluster_to_class[int(p)] for p in y_pred]) == y_true
    return hit.mean(), hit[old].mean(), hit[~old].mean()


REFERENCES = {"v1": reference_v1, "v2": reference_v2, "v2b": reference_v2b}


@pytest.mark.parametrize("protocol", ["v1", "v2", "v2b"])
def test_random_cases_match_a_dense_matrix_reference_ties_included(protocol):
    # the public codes' dense matrix breaks ties one way; entangle builds the same matrix, so
    # equal optima resolve identically (ties are frequent at these sizes)
    rng = np.random.default_rng(7)
    n_ties = 0
    for _ in range(60):
        y_true, y_pred, old = _random_case(
            rng, int(rng.integers(8, 60)), 6, int(rng.integers(3, 9)), 3
        )
        n_ties += not unique_hits(y_true, y_pred)
        got = cluster_accuracy(y_true, y_pred, old, protocol)
        np.testing.assert_allclose(got, REFERENCES[protocol](y_true, y_pred, old), rtol=1e-12)
    assert n_ties >= 5


# A tie between two optimal assignments (found by a random search). The public code's dense
# matrix (CVMI-Lab/SimGCD util/cluster_and_log_utils.py, split_cluster_acc_v2) maps cluster 2
# to class 1, giving Old 0.0 / New 0.5; a compact matrix over the occurring ids maps it to
# class 0 instead (Old 0.5 / New 0.25), with the same All.
TIE_TRUE = [0, 2, 1, 4, 3, 4]
TIE_PRED = [2, 2, 2, 3, 2, 4]
TIE_OLD = [True, False, True, False, False, False]


def test_a_tie_breaks_as_in_the_public_code():
    got = cluster_accuracy(TIE_TRUE, TIE_PRED, TIE_OLD, "v2")
    np.testing.assert_allclose(got, (1 / 3, 0.0, 0.5), rtol=1e-12)


def test_protocols_agree_when_the_clustering_is_perfect():
    y = np.repeat(np.arange(4), [5, 1, 3, 2])
    for protocol in ("v1", "v2", "v2b"):
        assert cluster_accuracy(y, (y + 3) % 7, y < 2, protocol) == (1.0, 1.0, 1.0)


def test_v1_never_scores_below_v2():
    # two separate assignments can only match more samples than one shared assignment
    rng = np.random.default_rng(3)
    for _ in range(20):
        y_true, y_pred, old = _random_case(rng, 40, 5, 4, 2)
        v1 = cluster_accuracy(y_true, y_pred, old, "v1")
        v2 = cluster_accuracy(y_true, y_pred, old, "v2")
        assert v1[0] >= v2[0] - 1e-12


def test_empty_group_under_v1_and_v2b_is_nan_with_a_warning():
    y = np.array([0, 1, 1, 0])
    for protocol in ("v1", "v2b"):
        with pytest.warns(EntangleWarning, match="no new-class samples"):
            acc_all, acc_old, acc_new = cluster_accuracy(y, y, np.ones(4, bool), protocol)
        assert acc_all == acc_old == 1.0 and np.isnan(acc_new)


def test_cluster_accuracies_and_protocol_parsing():
    y = np.array(PLANTED_TRUE)
    got = cluster_accuracies(y, np.array(PLANTED_PRED), y < 2, ("v2b", "v1"))
    assert list(got) == ["v2b", "v1"]
    assert got["v1"]["all"] == pytest.approx(10 / 13)
    assert accuracy_protocols(" v2b, v1 ,v2b") == ("v2b", "v1")
    assert accuracy_protocols(["v2"]) == ("v2",)
    for bad in ("v3", "", "v1,,nope"):
        with pytest.raises(EntangleValueError, match="comma list"):
            accuracy_protocols(bad)
    with pytest.raises(EntangleValueError, match="unknown protocol"):
        cluster_accuracy(y, y, y < 2, "v3")
