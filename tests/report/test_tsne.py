"""t-SNE helper: class-stratified cap, seeding, backends, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from entangle.errors import EntangleValueError
from entangle.report.tsne import stratified_subsample, tsne_embed


def test_stratified_subsample_keeps_class_shares_and_small_classes():
    labels = np.array([0] * 700 + [1] * 290 + [2] * 10 + [3] * 1)
    kept = stratified_subsample(labels, 100, seed=0)
    counts = np.bincount(labels[kept], minlength=4)
    assert kept.size == 100 and np.all(np.diff(kept) > 0)
    assert counts[3] == 1 and counts[2] == 1  # tiny classes are not dropped
    assert abs(counts[0] - 70) <= 1 and abs(counts[1] - 29) <= 1


def test_stratified_subsample_is_identity_below_the_cap():
    labels = np.arange(10) % 3
    assert np.array_equal(stratified_subsample(labels, 10, seed=1), np.arange(10))


@pytest.mark.parametrize("backend", ["opentsne", "sklearn"])
def test_tsne_embed_is_seeded_and_separates_blobs(backend):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    x = rng.normal(size=(120, 64)) + 8.0 * labels[:, None]
    a, kept = tsne_embed(x, seed=3, max_points=80, labels=labels, backend=backend)
    b, kept_b = tsne_embed(x, seed=3, max_points=80, labels=labels, backend=backend)
    assert a.shape == (80, 2) and np.array_equal(kept, kept_b)
    np.testing.assert_allclose(a, b)
    # blobs 8 sigma apart stay apart: every point is nearer its own class centroid
    lab = labels[kept]
    centroids = np.stack([a[lab == c].mean(axis=0) for c in (0, 1)])
    nearest = np.argmin(((a[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest, lab)


def test_small_maps_reach_opentsne_with_exact_neighbours(monkeypatch):
    openTSNE = pytest.importorskip("openTSNE")
    from entangle.report import tsne

    seen = []

    class Recording(openTSNE.TSNE):
        def __init__(self, **kwargs):
            seen.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(openTSNE, "TSNE", Recording)
    x = np.random.default_rng(0).normal(size=(40, 8))
    tsne_embed(x, seed=0, max_points=40, backend="opentsne")
    assert seen[-1]["neighbors"] == "exact"
    assert tsne.neighbors(tsne.EXACT_NEIGHBORS_MAX_POINTS + 1) == "auto"


def test_tsne_embed_rejects_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(EntangleValueError, match="backend"):
        tsne_embed(x, seed=0, max_points=10, backend="umap")
    with pytest.raises(EntangleValueError, match="at least 5 rows"):
        tsne_embed(x[:3], seed=0, max_points=10)
    with pytest.raises(EntangleValueError, match="NaN"):
        tsne_embed(np.full((10, 3), np.nan), seed=0, max_points=10)
    with pytest.raises(EntangleValueError, match="one entry per row"):
        tsne_embed(x, seed=0, max_points=10, labels=np.zeros(4))


def test_importing_the_report_package_loads_no_plotting_or_tsne_library():
    import subprocess
    import sys

    code = (
        "import sys, entangle.report; "
        "print([m for m in ('matplotlib', 'seaborn', 'openTSNE', 'sklearn', 'jinja2') "
        "if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
