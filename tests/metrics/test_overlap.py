"""k-NN mixing between old and novel samples against scikit-learn's NearestNeighbors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from entangle.data.synthetic import planted_features
from entangle.errors import EntangleValueError, EntangleWarning
from entangle.metrics import knn_overlap
from entangle.metrics.overlap import knn_indices


def overlap_reference(x: np.ndarray, novel: np.ndarray, k: int, metric: str) -> dict:
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    # kneighbors() without a query excludes each point itself
    idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    neighbour_is_new = novel[idx]
    n, n_new = len(x), int(novel.sum())
    return {
        "new_to_old": 1.0 - neighbour_is_new[novel].mean(),
        "old_to_new": neighbour_is_new[~novel].mean(),
        "new_to_old_chance": (n - n_new) / (n - 1),
        "old_to_new_chance": n_new / (n - 1),
    }


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_sklearn(metric, k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((120, 6)) + np.repeat([[0.0], [0.7]], 60, axis=0)
    novel = np.repeat([False, True], 60)
    rng.shuffle(novel)
    got = knn_overlap(torch.from_numpy(x), torch.from_numpy(novel), k=k, metric=metric)
    want = overlap_reference(x, novel, k, metric)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key  # shares are averaged in float32


def test_chunking_does_not_change_neighbours():
    x = torch.randn(50, 4, dtype=torch.float64)
    torch.testing.assert_close(knn_indices(x, 3, chunk=7), knn_indices(x, 3))


def test_separated_groups_do_not_mix_and_planted_overlap_mixes_more():
    shares = []
    for t in (0.0, 1.0):
        x, _, novel = planted_features(overlap=t, per_class=40)
        shares.append(knn_overlap(x, novel, k=5)["new_to_old"])
    assert shares[0] == 0.0  # orthogonal subspaces: no novel sample has an old neighbour
    assert shares[1] > 0.1  # same subspace: overlapping classes mix


def test_empty_group_gives_nan_and_warns():
    x = torch.randn(10, 3)
    with pytest.warns(EntangleWarning, match="one group is empty"):
        got = knn_overlap(x, torch.zeros(10, dtype=torch.bool), k=3)
    assert np.isnan(got["new_to_old"]) and np.isnan(got["new_to_old_chance"])
    assert got["old_to_new"] == 0.0


def test_bad_inputs_are_value_errors():
    x, novel = torch.randn(10, 3), torch.arange(10) % 2 == 0
    with pytest.raises(EntangleValueError, match="k must be between 1 and n - 1 = 9"):
        knn_overlap(x, novel, k=10)
    with pytest.raises(EntangleValueError, match="metric"):
        knn_overlap(x, novel, k=3, metric="manhattan")
    with pytest.raises(EntangleValueError, match="10 entries"):
        knn_overlap(x, novel[:9], k=3)
    with pytest.raises(EntangleValueError, match="2-D"):
        knn_overlap(x[:, 0], novel, k=3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float64_reference(dtype):
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.standard_normal((80, 5))).to(dtype)
    novel = np.arange(80) % 3 == 0
    got = knn_overlap(x, novel, k=4)
    want = overlap_reference(x.double().numpy(), novel, 4, "cosine")
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key  # shares are averaged in float32
