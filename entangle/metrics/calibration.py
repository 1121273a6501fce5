"""Conceptor calibration: the aperture EEP can act at, and whether it can (docs/calibration.md).

``auto`` (:func:`auto_aperture`) uses what a GCD method sees, the reference model's labeled
AND unlabeled features (never which unlabeled rows are novel). With R = Z^T Z / N of the
labeled features, eigenpairs (s_k, u_k), gains g_k(a) = s_k / (s_k + a^-2), a row's energy
ratio is E(z) = sum_k g_k(a) p_k(z) with p_k(z) = (u_k . z)^2 / ||z||^2, so the gap between
the mean labeled energy (EAGC's starting mu) and the mean unlabeled energy is

    gap(a) = sum_k g_k(a) d_k,   d_k = mean_labeled p_k - mean_unlabeled p_k,

and ``auto`` maximises it: it keeps the directions where labeled rows carry more energy than
unlabeled ones and suppresses those where the unlabeled rows (their novel part) carry more.
gap(a) -> 0 for a -> 0 (C -> 0) and for a -> inf on a full-rank R (C -> I), so the maximum is
inside. For a mixture of old rows like the labeled ones and a share pi of novel rows,
gap(a) = pi (mu - mean novel energy): the old/novel separation EEP's gate needs, scaled by an
unknown constant that does not move the maximiser.

Jaeger's criterion (:func:`jaeger_aperture`, ``aperture="jaeger"``) uses the labeled features
alone: with t = log a, dg_k/dt = 2 g_k (1 - g_k), so

    d||C(a)||_F^2 / d log a = sum_k 4 g_k^2 (1 - g_k),

maximised (Jaeger 2014, "Controlling recurrent neural networks by conceptors", aperture
adaptation) where the conceptor resolves the labeled spectrum best; the many small
eigenvalues dominate it and it picks apertures at which EEP barely acts.
"""

from __future__ import annotations

import math

import torch

from entangle.errors import EntangleValueError
from entangle.metrics._tensors import as_matrix
from entangle.metrics.energy import conceptor, conceptor_spectrum, eep_gate, energy_ratio

ACTIVE_WEIGHT = 0.01  # a row counts as acted on when its EEP weight exceeds this
INERT_GAP = 0.05  # energy gap (labeled - unlabeled mean ratio) below which EEP cannot separate
INERT_WEIGHT_SHARE = 0.1  # mean weight / beta below which the projection barely moves gradients


def correlation_eigenvalues(features: torch.Tensor) -> torch.Tensor:
    """``[D]`` eigenvalues (float64, >= 0) of R = Z^T Z / N, the conceptor's correlation."""
    z = as_matrix(features, "features").to(torch.float64)
    if z.shape[0] == 0:
        raise EntangleValueError("calibration: no labeled features given")
    return torch.linalg.eigvalsh(z.T @ z / z.shape[0]).clamp_min(0.0)


def aperture_sensitivity(eigenvalues: torch.Tensor, apertures: torch.Tensor) -> torch.Tensor:
    """d||C(a)||_F^2 / d log a for each aperture ``[m]``, from R's eigenvalues ``[D]``."""
    s = eigenvalues.to(torch.float64)[None, :]
    a = apertures.to(torch.float64)[:, None]
    g = s / (s + a.pow(-2))
    return (4 * g.pow(2) * (1 - g)).sum(dim=1)


def _log_grid(s: torch.Tensor, points: int) -> torch.Tensor:
    """Apertures covering a^-2 from 100 x R's largest eigenvalue to 1/100 of its smallest
    positive one (at most 12 decades below the largest), log-spaced."""
    top = float(s.max())
    if not top > 0:
        raise EntangleValueError("calibration: the labeled features are all zero")
    positive = s[s > top * 1e-12]
    low = max(float(positive.min()) / 100, top * 1e-12)
    # a = (a^-2)^-1/2, so the a^-2 range maps to a log range of a
    lo, hi = 0.5 * math.log10(1 / (100 * top)), 0.5 * math.log10(1 / low)
    return torch.logspace(lo, hi, points, dtype=torch.float64)


def jaeger_aperture(features: torch.Tensor, points: int = 4001) -> float:
    """Jaeger's aperture: the maximiser of d||C||_F^2 / d log a (labeled features only).

    Args:
        features: ``[N, D]`` labeled reference features (rows are samples).
        points: grid size (see :func:`_log_grid`).

    Returns:
        the aperture a > 0 (a float).
    """
    s = correlation_eigenvalues(features)
    grid = _log_grid(s, points)
    return float(grid[aperture_sensitivity(s, grid).argmax()])


def _direction_shares(features: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Mean over rows of p_k(z) = (u_k . z)^2 / ||z||^2 ``[D]``; zero rows are left out."""
    z = as_matrix(features, "features").to(torch.float64)
    p = (z @ basis.to(z.device)).pow(2)
    norm = p.sum(dim=1, keepdim=True)
    keep = norm[:, 0] > 0
    if not bool(keep.any()):
        raise EntangleValueError("calibration: every row of the features is zero")
    return (p[keep] / norm[keep]).mean(dim=0)


def energy_gap(
    labeled: torch.Tensor, unlabeled: torch.Tensor, apertures: torch.Tensor
) -> torch.Tensor:
    """Mean labeled minus mean unlabeled energy ratio at each aperture ``[m]``.

    The conceptor is fit on ``labeled`` (as EAGC's is), so the labeled mean is EAGC's
    starting mu; computed exactly through R's eigenbasis (module docstring).

    Args:
        labeled: ``[N, D]`` labeled reference features.
        unlabeled: ``[M, D]`` unlabeled features of the same model.
        apertures: ``[m]`` apertures a > 0.
    """
    lab = as_matrix(labeled, "labeled").to(torch.float64)
    unl = as_matrix(unlabeled, "unlabeled").to(torch.float64)
    if lab.shape[0] == 0 or unl.shape[0] == 0:
        raise EntangleValueError(
            f"calibration: need labeled and unlabeled features, got {lab.shape[0]} and "
            f"{unl.shape[0]} rows"
        )
    if lab.shape[1] != unl.shape[1]:
        raise EntangleValueError(
            f"calibration: labeled features have {lab.shape[1]} columns but unlabeled "
            f"{unl.shape[1]}; give features of the same layer"
        )
    s, basis = torch.linalg.eigh(lab.T @ lab / lab.shape[0])
    s = s.clamp_min(0.0)
    d = _direction_shares(lab, basis) - _direction_shares(unl.to(lab.device), basis)
    a = apertures.to(device=lab.device, dtype=torch.float64)[:, None]
    gains = s[None, :] / (s[None, :] + a.pow(-2))
    return gains @ d


def auto_aperture(labeled: torch.Tensor, unlabeled: torch.Tensor, points: int = 4001) -> float:
    """The aperture maximising the labeled-minus-unlabeled energy gap (docs/calibration.md).

    Label-free with respect to the unlabeled rows: it uses the reference model's labeled
    and unlabeled features, never which unlabeled rows are novel.

    Args:
        labeled: ``[N, D]`` labeled reference features (the conceptor's).
        unlabeled: ``[M, D]`` unlabeled features of the same model (the test transform).
        points: grid size (the grid of :func:`jaeger_aperture`).

    Returns:
        the aperture a > 0 (a float).
    """
    grid = _log_grid(correlation_eigenvalues(labeled), points)
    return float(grid[energy_gap(labeled, unlabeled, grid).argmax()])


def eep_diagnosis(
    labeled: torch.Tensor,
    unlabeled: torch.Tensor,
    *,
    aperture: float,
    beta: float = 0.5,
    novel: torch.Tensor | None = None,
) -> dict:
    """What EEP would do at ``aperture`` with a conceptor fit on ``labeled``.

    The weights follow EAGC's gate at its start, mu = the mean labeled energy:
    w_i = beta clip(1 - E(z_i) / (mu + 1e-6), 0, 1) on unlabeled rows.

    Args:
        labeled: ``[N, D]`` labeled (reference) features; the conceptor is fit on them.
        unlabeled: ``[M, D]`` unlabeled features of the same model.
        aperture: conceptor aperture.
        beta: EEP strength.
        novel: ``[M]`` bool, unlabeled rows of novel classes (oracle), optional.

    Returns:
        dict of floats: ``aperture, mu, energy_unlabeled, gap`` (mu - mean unlabeled energy),
        ``share_active`` (w_i > 0.01), ``mean_weight``, ``quota``, ``effective_rank``,
        ``inert`` (bool), and ``energy_new, gap_new, share_active_new`` with ``novel``.
    """
    c = conceptor(labeled.to(torch.float64), aperture)
    e_lab = energy_ratio(labeled.to(torch.float64), c, warn=False)
    e_unl = energy_ratio(unlabeled.to(torch.float64), c, warn=False)
    mu = e_lab.nanmean()
    w = beta * eep_gate(e_unl, mu)
    spectrum = conceptor_spectrum(c)
    out = {
        "aperture": float(aperture),
        "mu": float(mu),
        "energy_unlabeled": float(e_unl.nanmean()),
        "gap": float(mu - e_unl.nanmean()),
        "share_active": float((w > ACTIVE_WEIGHT).double().mean()),
        "mean_weight": float(w.mean()),
        "quota": spectrum["quota"],
        "effective_rank": spectrum["effective_rank"],
    }
    if novel is not None and bool(novel.any()):
        novel = novel.to(e_unl.device).bool()
        out["energy_new"] = float(e_unl[novel].nanmean())
        out["gap_new"] = float(mu - e_unl[novel].nanmean())
        out["share_active_new"] = float((w[novel] > ACTIVE_WEIGHT).double().mean())
    out["inert"] = is_inert(out["gap"], out["mean_weight"], beta)
    return out


def is_inert(gap: float, mean_weight: float, beta: float) -> bool:
    """EEP is inert when labeled and unlabeled energies barely differ AND weights stay small.

    Thresholds: gap < 0.05 and mean weight < 0.1 beta (see docs/calibration.md).
    """
    if not (math.isfinite(gap) and math.isfinite(mean_weight)):
        return False
    return gap < INERT_GAP and mean_weight < INERT_WEIGHT_SHARE * beta


def calibration_record(
    labeled: torch.Tensor,
    unlabeled: torch.Tensor,
    *,
    aperture: float,
    beta: float = 0.5,
    novel: torch.Tensor | None = None,
    auto: float | None = None,
) -> dict:
    """The diagnosis at the run's aperture and at the one ``auto`` picks, for run.json.

    ``auto`` is computed on ``labeled`` and ``unlabeled`` unless given (a run that resolved
    it on more unlabeled rows passes its value); ``jaeger_aperture`` is recorded beside it.
    """
    if auto is None:
        auto = auto_aperture(labeled, unlabeled)
    return {
        "aperture": float(aperture),
        "auto_aperture": float(auto),
        "jaeger_aperture": jaeger_aperture(labeled),
        "beta": float(beta),
        "at_aperture": eep_diagnosis(labeled, unlabeled, aperture=aperture, beta=beta, novel=novel),
        "at_auto": eep_diagnosis(labeled, unlabeled, aperture=auto, beta=beta, novel=novel),
        "n_labeled": int(labeled.shape[0]),
        "n_unlabeled": int(unlabeled.shape[0]),
    }


# ---------------------------------------------------------------- aperture resolution

APERTURE_CRITERIA = ("auto", "jaeger")


def is_auto(aperture) -> bool:
    """Whether ``aperture`` asks for the ``"auto"`` criterion (any case, any spaces)."""
    return isinstance(aperture, str) and aperture.strip().lower() == "auto"


def resolve_aperture(
    aperture: float | str, features: torch.Tensor, unlabeled: torch.Tensor | None = None
) -> float:
    """A float aperture: a number, ``"auto"`` (needs ``unlabeled``) or ``"jaeger"``.

    Args:
        aperture: a positive number (or numeric string), ``"auto"`` or ``"jaeger"``.
        features: ``[N, D]`` labeled reference features.
        unlabeled: ``[M, D]`` unlabeled reference features, for ``"auto"``.

    Raises:
        EntangleValueError: an unknown string, or ``"auto"`` without unlabeled features
            (``auto`` is not silently replaced by another criterion; docs/calibration.md).
    """
    if not isinstance(aperture, str):
        return float(aperture)
    name = aperture.strip().lower()
    if name == "jaeger":
        return jaeger_aperture(features)
    if name == "auto":
        if unlabeled is None:
            raise EntangleValueError(
                "aperture='auto' compares labeled and unlabeled reference features: pass "
                "unlabeled= (from_features) or unlabeled_loader= (fit), or choose "
                "aperture='jaeger' (labeled features only) or a number such as 2.0"
            )
        return auto_aperture(features, unlabeled)
    try:
        return float(aperture)
    except ValueError:
        raise EntangleValueError(
            f"aperture must be a positive number, 'auto' or 'jaeger', got {aperture!r}"
        ) from None
