"""Conceptor calibration: Jaeger's aperture criterion and whether EEP can act (docs/calibration.md).

For eigenvalues s_k of R = Z^T Z / N, the conceptor's gains are g_k(a) = s_k / (s_k + a^-2),
so with t = log a, dg_k/dt = 2 g_k (1 - g_k) and

    d||C(a)||_F^2 / d log a = sum_k 4 g_k^2 (1 - g_k).

The "auto" aperture maximises it (Jaeger 2014, "Controlling recurrent neural networks by
conceptors", aperture adaptation): the aperture at which the conceptor is most sensitive to
its aperture, i.e. where it resolves the spectrum of the labeled features best. It needs only
the labeled features, no labels of the unlabeled rows.
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


def auto_aperture(features: torch.Tensor, points: int = 4001) -> float:
    """The aperture maximising d||C||_F^2 / d log a over a log grid spanning R's spectrum.

    Args:
        features: ``[N, D]`` labeled reference features (rows are samples).
        points: grid size; the grid covers a^-2 from 100 x the largest eigenvalue down to
            1/100 of the smallest positive one (capped to 12 decades below the largest).

    Returns:
        the aperture a > 0 (a float).
    """
    s = correlation_eigenvalues(features)
    top = float(s.max())
    if not top > 0:
        raise EntangleValueError("calibration: the labeled features are all zero")
    positive = s[s > top * 1e-12]
    low = max(float(positive.min()) / 100, top * 1e-12)
    # a = (a^-2)^-1/2, so the a^-2 range maps to a log range of a
    lo, hi = 0.5 * math.log10(1 / (100 * top)), 0.5 * math.log10(1 / low)
    grid = torch.logspace(lo, hi, points, dtype=torch.float64)
    return float(grid[aperture_sensitivity(s, grid).argmax()])


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
) -> dict:
    """The diagnosis at the run's aperture and at the one ``auto`` picks, for run.json."""
    auto = auto_aperture(labeled)
    return {
        "aperture": float(aperture),
        "auto_aperture": auto,
        "beta": float(beta),
        "at_aperture": eep_diagnosis(labeled, unlabeled, aperture=aperture, beta=beta, novel=novel),
        "at_auto": eep_diagnosis(labeled, unlabeled, aperture=auto, beta=beta, novel=novel),
        "n_labeled": int(labeled.shape[0]),
        "n_unlabeled": int(unlabeled.shape[0]),
    }
