"""entangle.report.plot_overlap: finite rows, the k-NN overlap of a given map, and its notes."""

from __future__ import annotations

import numpy as np
import torch

from entangle.metrics import knn_overlap
from entangle.report.plot_overlap import Overlap, compute_overlap, finite_rows


def _arrays(n=30, bad=()):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, 4)).astype(np.float32) + labels[:, None] * 3
    for i in bad:
        features[i, 1] = np.nan
    return {"features": features, "labels": labels, "novel": labels == 2}


def test_finite_rows_skip_rows_with_nan_or_inf():
    arrays = _arrays(6, bad=(1, 4))
    arrays["features"][2, 0] = np.inf
    assert finite_rows(arrays).tolist() == [0, 3, 5]


def test_a_given_map_is_used_and_knn_overlap_is_of_the_kept_rows():
    arrays = _arrays(30, bad=(0,))
    rows = finite_rows(arrays)
    kept = np.arange(0, rows.size, 2)  # the map kept every other finite row
    coords = np.random.default_rng(1).normal(size=(kept.size, 2)).astype(np.float32)
    out = compute_overlap(arrays, 2, max_points=15, backend="auto", seed=0, tsne_map=(coords, kept))
    assert (out.epoch, out.n_total, out.n_shown) == (2, 30, kept.size)
    assert out.note.startswith("1 rows with NaN/inf features left out")
    np.testing.assert_array_equal(out.labels, arrays["labels"][rows[kept]])
    mask = torch.from_numpy(arrays["novel"][rows[kept]])
    expected = knn_overlap(torch.from_numpy(arrays["features"][rows[kept]]), mask, k=10)
    assert out.knn_feature.keys() == expected.keys()
    for key, value in expected.items():
        assert np.allclose(out.knn_feature[key], value, equal_nan=True), key
    assert out.knn_map


def test_too_few_rows_or_one_group_only_say_so():
    few = compute_overlap(_arrays(4), 0, max_points=10, backend="auto", seed=0)
    assert few.coords is None and "too few finite feature rows" in few.note and few.n_shown == 0
    arrays = _arrays(30)
    arrays["novel"][:] = False
    rows = finite_rows(arrays)
    coords = np.zeros((rows.size, 2), dtype=np.float32)
    out = compute_overlap(arrays, 0, max_points=30, backend="auto", seed=0, tsne_map=(coords, rows))
    assert out.knn_feature == {} and "needs both old and new samples" in out.note
    assert Overlap(epoch=0, n_total=3).n_shown == 0
