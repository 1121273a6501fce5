"""Planted features: Gaussian class clusters whose novel classes overlap the old-class subspace
by a controlled amount, so every subspace and energy metric has a known answer to move with.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from entangle.errors import EntangleTypeError, EntangleValueError


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise EntangleTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise EntangleValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EntangleTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise EntangleValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return float(value)


def _class_means(rng: np.random.Generator, n_classes: int, k: int) -> np.ndarray:
    """``[n_classes, k]`` random means, centred on 0 (for 2+ classes) with RMS norm 1."""
    means = rng.standard_normal((n_classes, k))
    if n_classes > 1:
        # centred means keep the normalised old mean (SOC's mu) small, so overlap=0 gives SOC ~ 0
        means -= means.mean(axis=0, keepdims=True)
    rms = math.sqrt(float((means**2).sum(axis=1).mean()))
    return means / rms if rms > 0 else means


def planted_features(
    *,
    n_old_classes: int = 5,
    n_new_classes: int = 5,
    per_class: int = 100,
    dim: int = 32,
    subspace_dim: int = 4,
    overlap: float = 0.5,
    spread: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian class clusters with novel classes planted at a given overlap with the old ones.

    Old classes live in a random ``subspace_dim``-dimensional subspace S_old of R^dim: class
    means (centred, RMS norm 1) and isotropic within-class noise of standard deviation
    ``spread`` per direction. Novel classes are drawn the same way in coefficient space and
    mapped by the orthonormal basis sqrt(t) S_old + sqrt(1 - t) S_new, where S_new is
    orthogonal to S_old and t = ``overlap``. So t = 0 puts novel classes in an orthogonal
    subspace, t = 1 inside the old one, and every principal angle between the two equals
    arccos(sqrt(t)). All random draws happen before t is used: for a fixed seed, a sweep over
    ``overlap`` moves the same points, and the novel rows' energy ratio under a conceptor fitted
    on the old rows is exactly proportional to t.

    Args:
        n_old_classes: number of old (known) classes, >= 1.
        n_new_classes: number of novel classes, >= 1.
        per_class: samples per class, >= 1.
        dim: feature width D, >= 2 * subspace_dim.
        subspace_dim: dimension k of S_old and S_new, >= 1.
        overlap: t in [0, 1].
        spread: within-class standard deviation per subspace direction, >= 0.
        seed: seed of the numpy generator.

    Returns:
        ``(features, labels, novel)``: ``[n, dim]`` float32, ``[n]`` int64 with old classes
        ``0 .. n_old_classes - 1`` then novel classes, ``[n]`` bool (True for novel rows);
        n = (n_old_classes + n_new_classes) * per_class, rows ordered by class.

    Example:
        >>> x, y, novel = planted_features(overlap=0.0, per_class=10)
        >>> x.shape, int(y.max()), int(novel.sum())
        ((100, 32), 9, 50)
    """
    n_old = _check_int("n_old_classes", n_old_classes, 1)
    n_new = _check_int("n_new_classes", n_new_classes, 1)
    per_class = _check_int("per_class", per_class, 1)
    k = _check_int("subspace_dim", subspace_dim, 1)
    dim = _check_int("dim", dim, 1)
    if dim < 2 * k:
        raise EntangleValueError(
            f"dim must be at least 2 * subspace_dim = {2 * k} (room for an old subspace and an "
            f"orthogonal novel one), got dim={dim}; raise dim or lower subspace_dim"
        )
    t = _check_float("overlap", overlap, 0.0, 1.0)
    spread = _check_float("spread", spread, 0.0, math.inf)
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 2 * k)))
    s_old, s_new = basis[:, :k], basis[:, k:]
    coeffs = []
    for n_classes in (n_old, n_new):
        means = np.repeat(_class_means(rng, n_classes, k), per_class, axis=0)
        coeffs.append(means + spread * rng.standard_normal(means.shape))
    novel_basis = math.sqrt(t) * s_old + math.sqrt(1.0 - t) * s_new
    features = np.concatenate([coeffs[0] @ s_old.T, coeffs[1] @ novel_basis.T])
    labels = np.repeat(np.arange(n_old + n_new, dtype=np.int64), per_class)
    novel = labels >= n_old
    return features.astype(np.float32), labels, novel
