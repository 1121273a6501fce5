"""How much novel-class features live in the known-class subspace: SOC and principal angles."""

from __future__ import annotations

import torch

from entangle.defaults import SOC_K
from entangle.errors import EntangleValueError, warn_degenerate
from entangle.metrics._tensors import as_matrix


def _normalize_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def top_right_singular_vectors(centered: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k right singular vectors of ``centered`` ``[n, D]`` as columns ``[D, k]``."""
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)
    return vh[:k].T


def _check_same_width(old: torch.Tensor, new: torch.Tensor, fn: str) -> None:
    if old.shape[1] != new.shape[1]:
        raise EntangleValueError(
            f"{fn}: old features are {old.shape[1]}-d and new features {new.shape[1]}-d; "
            "pass features from the same layer"
        )


def soc(old: torch.Tensor, new: torch.Tensor, k: int = SOC_K, *, warn: bool = True) -> torch.Tensor:
    """Subspace Overlap Coefficient of novel features with the top-k known-class subspace.

    Rows are L2-normalised; mu is the mean of the normalised old rows; V_k holds the top-k
    right singular vectors of (Z_old - mu);
    SOC = ||(Z_new - mu) V_k V_k^T||_F^2 / ||Z_new - mu||_F^2.

    Args:
        old: ``[n_old, D]`` known-class (labeled) features.
        new: ``[n_new, D]`` features of unlabeled samples whose true class is novel.
        k: subspace dimension (the paper uses 16).

    Returns:
        0-dim tensor in [0, 1] on the inputs' device; NaN (with a warning) when a set is
        empty or ``k`` exceeds the rank min(n_old - 1, D) of the centred old set.
    """
    old, new = as_matrix(old, "old"), as_matrix(new, "new")
    _check_same_width(old, new, "soc")
    reason = _rank_problem(old.shape[0], old.shape[1], k, new.shape[0])
    if reason:
        if warn:
            warn_degenerate(f"soc: {reason}; SOC is NaN")
        return torch.full((), float("nan"), dtype=old.dtype, device=old.device)
    return _soc_of(_normalize_rows(old), _normalize_rows(new), k)[0]


def _soc_of(old_n: torch.Tensor, new_n: torch.Tensor, k: int) -> tuple:
    """SOC of normalised rows and the old set's centred top-k basis ``[D, k]``."""
    mu = old_n.mean(dim=0, keepdim=True)
    basis = top_right_singular_vectors(old_n - mu, k)
    centred_new = new_n - mu
    total = centred_new.pow(2).sum()
    inside = (centred_new @ basis).pow(2).sum()
    nan = torch.full((), float("nan"), dtype=old_n.dtype, device=old_n.device)
    value = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), nan)
    return value.clamp(0, 1), basis


def _rank_problem(n_old: int, dim: int, k: int, n_new: int | None = None) -> str:
    if k < 1:
        raise EntangleValueError(f"k must be a positive subspace dimension, got {k}")
    if n_old == 0:
        return "no old (labeled) features"
    if n_new == 0:
        return "no new (novel-class) features"
    rank = min(n_old - 1, dim)
    if k > rank:
        return f"k={k} exceeds the rank {rank} of the centred set ({n_old} rows, {dim} dims)"
    return ""


def soc_and_angles(old: torch.Tensor, new: torch.Tensor, k: int = SOC_K) -> tuple:
    """``(soc(old, new, k), principal_angles(old, new, k))`` with one SVD of the old set.

    Both centre the normalised old rows on their own mean and take its top-k right singular
    vectors, so the basis is computed once (what a probe set pays at each evaluation).
    Degenerate inputs fall back to the two functions (NaN with their warnings off).
    """
    old, new = as_matrix(old, "old"), as_matrix(new, "new")
    _check_same_width(old, new, "soc")
    if _rank_problem(old.shape[0], old.shape[1], k, new.shape[0]) or _rank_problem(
        new.shape[0], new.shape[1], k
    ):
        return soc(old, new, k, warn=False), principal_angles(old, new, k, warn=False)
    old_n, new_n = _normalize_rows(old), _normalize_rows(new)
    value, basis_old = _soc_of(old_n, new_n, k)
    basis_new = top_right_singular_vectors(new_n - new_n.mean(dim=0, keepdim=True), k)
    return value, _angles(basis_old, basis_new)


def principal_angles(a: torch.Tensor, b: torch.Tensor, k: int = SOC_K, *, warn: bool = True):
    """Principal angles between the top-k principal subspaces of two feature sets.

    Each set's rows are L2-normalised and centred on that set's own mean; the angles are
    arccos of the singular values of V_a^T V_b.

    Args:
        a: ``[n_a, D]`` (e.g. labeled features).
        b: ``[n_b, D]`` (e.g. novel-class features).
        k: subspace dimension.

    Returns:
        ``[k]`` angles in radians, ascending, in [0, pi/2]; all NaN (with a warning) when
        ``k`` exceeds either set's rank.
    """
    a, b = as_matrix(a, "a"), as_matrix(b, "b")
    _check_same_width(a, b, "principal_angles")
    reason = _rank_problem(a.shape[0], a.shape[1], k) or _rank_problem(b.shape[0], b.shape[1], k)
    if reason:
        if warn:
            warn_degenerate(f"principal_angles: {reason}; angles are NaN")
        return torch.full((k,), float("nan"), dtype=a.dtype, device=a.device)
    bases = []
    for x in (a, b):
        xn = _normalize_rows(x)
        bases.append(top_right_singular_vectors(xn - xn.mean(dim=0, keepdim=True), k))
    return _angles(bases[0], bases[1])


def _angles(basis_a: torch.Tensor, basis_b: torch.Tensor) -> torch.Tensor:
    sv = torch.linalg.svdvals(basis_a.T @ basis_b).clamp(0.0, 1.0)
    return torch.arccos(sv).sort().values
