"""t-SNE maps of saved features: PCA to 50 dims, then openTSNE (FFT) or scikit-learn.

openTSNE and scikit-learn are imported inside the functions so that importing the report
package stays cheap.
"""

from __future__ import annotations

import os

import numpy as np

from entangle.errors import EntangleValueError

PCA_DIMS = 50
# openTSNE's Barnes-Hut gradient costs ~n log n per iteration, its FFT grid nearly a fixed
# amount up to ~10k points; measured side by side (entangle's 50-d PCA input, 10 clusters,
# one thread, perplexity 30, this project's 2-core machine, min of 2): BH / FFT seconds
# 1k 2.1 / 9.2, 2k 5.0 / 9.2, 5k 22.3 / 16.6, 10k 66.1 / 21.6, 20k 151 / 36, 50k - / 145
# (BH at 50k not run: it grows past 10 minutes).
# The curves cross near 3.3k points.
FFT_MIN_POINTS = 3500
# openTSNE's schedule: early exaggeration, then the plain optimisation. Its default plain
# phase is 500 iterations, sized for large maps; below FFT_MIN_POINTS 250 suffice. Measured on
# the demo's six 1,797-point maps (one thread, BH, same affinities and PCA init): 250 + 500
# iterations 3.2-4.2 s, KL 0.662-0.675, map k-NN new->old share 0.181-0.197; 250 + 250
# iterations 2.3-2.8 s, KL 0.679-0.690, share 0.180-0.195 (within 0.012 of the longer run in
# every map, the size of a seed change). Larger maps keep openTSNE's 500.
# Early exaggeration: openTSNE's 250 iterations for larger maps, 125 below FFT_MIN_POINTS.
# Measured on the demo's six maps (one thread, BH, theta 0.5, exact KL of the final map):
# 250 + 250 seeds 0-2 KL 0.685-0.698, share 0.029-0.035, 3.4-3.9 s CPU; 125 + 250 seed 0
# KL 0.686-0.696 (within the seeds' range of each map, or 0.0002 above), share 0.031-0.034
# (within 0.0013 of the seeds' range), 2.6-2.9 s. theta 0.8 was cheaper still (2.0 s) but
# raised KL by ~0.03, four times the seeds' spread, so it is not used.
EXAGGERATION_ITER = 250
SMALL_MAP_EXAGGERATION_ITER = 125
SMALL_MAP_ITER = 250
LARGE_MAP_ITER = 500
# openTSNE's default neighbour search ("auto") is exact only below 1,000 points and Annoy above;
# the affinities (3 x perplexity = 90 neighbours, 50-d PCA input, 10 clusters, one thread,
# CPU seconds, the smaller of two, this 2-core machine at load ~13) cost Annoy / exact:
# 1k 0.32 / 0.07, 2k 0.70 / 0.14, 3.5k 1.31 / 0.25, 5k 2.48 / 0.56, 10k 6.62 / 1.45. Exact
# neighbours are the true ones, so up to 10k points the map uses them (the demo's 1,797-point
# maps: 0.69 -> 0.16 s each, same KL 0.684, map k-NN new->old share 0.030 -> 0.029).
EXACT_NEIGHBORS_MAX_POINTS = 10000
# below this many points threads cost more than they save (their barriers spin, and on a
# shared machine a small map took 20 s with 2 threads against 0.5 s with one)
THREADED_MIN_POINTS = 1000
BACKENDS = ("auto", "opentsne", "sklearn")


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def stratified_subsample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Indices of at most ``max_points`` rows, each class keeping its share of the rows.

    Args:
        labels: ``[n]`` class of each row.
        max_points: cap on the number of rows returned.
        seed: seeds the choice inside each class.

    Returns:
        ``[m]`` sorted row indices, m = min(n, max_points); every class keeps at least one
        row while the cap allows it.
    """
    n = labels.shape[0]
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (max_points / n)
    quota = np.floor(exact).astype(np.int64)
    # rows lost to rounding go to the classes with the largest remainders
    spare = max_points - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:spare]] += 1
    # small classes get at least one row, taken from the largest quotas
    for c in np.flatnonzero(quota == 0):
        donor = int(np.argmax(quota))
        if quota[donor] <= 1:
            break
        quota[donor] -= 1
        quota[c] = 1
    kept = [
        rng.choice(np.flatnonzero(inverse == c), size=int(q), replace=False)
        for c, q in enumerate(quota)
        if q > 0
    ]
    return np.sort(np.concatenate(kept))


def pca_reduce(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """``[n, D]`` -> ``[n, min(dims, D, n)]`` by PCA (centred, exact SVD for small inputs)."""
    if x.shape[1] <= dims:
        return x
    from sklearn.decomposition import PCA

    k = min(dims, x.shape[0])
    return PCA(n_components=k, random_state=seed).fit_transform(x)


def tsne_embed(
    features,
    *,
    seed: int,
    max_points: int,
    labels=None,
    backend: str = "auto",
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-dimensional t-SNE map of (a class-stratified subsample of) the features.

    Args:
        features: ``[n, D]`` array.
        seed: seeds subsampling, PCA and the t-SNE optimiser.
        max_points: cap on the rows embedded; larger sets are subsampled by class.
        labels: ``[n]`` classes for the stratified cap (None: one class).
        backend: ``"opentsne"`` (FFT-accelerated from ``FFT_MIN_POINTS`` rows on, Barnes-Hut
            below; ``n_jobs`` = available cores from ``THREADED_MIN_POINTS`` rows on),
            ``"sklearn"`` (Barnes-Hut), or ``"auto"`` (openTSNE when installed).
        threads: threads for the optimiser (default: available cores from
            ``THREADED_MIN_POINTS`` rows on, else 1).

    Returns:
        ``(coords [m, 2] float64, kept_indices [m])``; ``kept_indices`` index ``features``.
    """
    if backend not in BACKENDS:
        raise EntangleValueError(f"tsne backend must be one of {BACKENDS}, got {backend!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise EntangleValueError(f"tsne_embed: expected features [n, D], got shape {x.shape}")
    if max_points < 5:
        raise EntangleValueError(f"max_points must be at least 5, got {max_points}")
    lab = np.zeros(x.shape[0], dtype=np.int64) if labels is None else np.asarray(labels)
    if lab.shape != (x.shape[0],):
        raise EntangleValueError(
            f"tsne_embed: labels must have one entry per row ({x.shape[0]}), got {lab.shape}"
        )
    kept = stratified_subsample(lab, max_points, seed)
    x = x[kept]
    if x.shape[0] < 5:
        raise EntangleValueError(
            f"tsne_embed: need at least 5 rows for a t-SNE map, got {x.shape[0]}"
        )
    if not np.isfinite(x).all():
        raise EntangleValueError(
            "tsne_embed: features contain NaN or inf; drop those rows before embedding"
        )
    x = pca_reduce(x, PCA_DIMS, seed)
    # perplexity must stay well below the number of points
    perplexity = float(min(30.0, (x.shape[0] - 1) / 3.0))
    backend = resolve_backend(backend)
    if threads is None:
        threads = available_cores() if x.shape[0] >= THREADED_MIN_POINTS else 1
    if backend == "opentsne":
        coords = _opentsne(x, perplexity, seed, threads)
    else:
        coords = _sklearn_tsne(x, perplexity, seed, threads)
    return np.asarray(coords, dtype=np.float64), kept


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"opentsne"`` when installed, else ``"sklearn"``; others unchanged."""
    if backend not in BACKENDS:
        raise EntangleValueError(f"tsne backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "opentsne" if _has_opentsne() else "sklearn"
    return backend


def _has_opentsne() -> bool:
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return False
    return True


def schedule(n_points: int) -> tuple[int, int]:
    """``(early exaggeration iterations, plain iterations)`` of an openTSNE map of
    ``n_points`` (see ``SMALL_MAP_ITER`` and ``SMALL_MAP_EXAGGERATION_ITER``)."""
    if n_points < FFT_MIN_POINTS:
        return SMALL_MAP_EXAGGERATION_ITER, SMALL_MAP_ITER
    return EXAGGERATION_ITER, LARGE_MAP_ITER


def neighbors(n_points: int) -> str:
    """openTSNE's neighbour search for a map of ``n_points`` (see
    ``EXACT_NEIGHBORS_MAX_POINTS``)."""
    return "exact" if n_points <= EXACT_NEIGHBORS_MAX_POINTS else "auto"


def _opentsne(x: np.ndarray, perplexity: float, seed: int, threads: int) -> np.ndarray:
    from openTSNE import TSNE

    early, plain = schedule(x.shape[0])
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        early_exaggeration_iter=early,
        n_iter=plain,
        negative_gradient_method="fft" if x.shape[0] >= FFT_MIN_POINTS else "bh",
        neighbors=neighbors(x.shape[0]),
        initialization="pca",
        random_state=seed,
        n_jobs=threads,
        verbose=False,
    )
    return np.asarray(tsne.fit(x))


def _sklearn_tsne(x: np.ndarray, perplexity: float, seed: int, threads: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
        n_jobs=threads,
    )
    # the Barnes-Hut gradient runs on OpenMP threads, which n_jobs does not cap
    with threadpool_limits(limits=threads, user_api="openmp"):
        return tsne.fit_transform(x)
