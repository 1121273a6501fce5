"""Known-class subspace energy: the conceptor, energy ratios, and logit free energy."""

from __future__ import annotations

import math

import torch

from entangle.defaults import APERTURE, SIMGCD_LOSS
from entangle.errors import EntangleValueError, warn_degenerate
from entangle.metrics._tensors import as_matrix, as_tensor, compute_dtype


def conceptor(features: torch.Tensor, aperture: float = APERTURE) -> torch.Tensor:
    """Conceptor C = R (R + a^-2 I)^-1 of the known-class features, R = Z^T Z / N.

    Computed through a symmetric eigendecomposition of R (in float64 for stability, returned
    in the features' compute dtype): C = U diag(s / (s + a^-2)) U^T.

    Args:
        features: ``[N, D]`` labeled features, rows are samples (not centred, as in the paper).
        aperture: a > 0; larger apertures push C towards the identity.

    Returns:
        ``[D, D]`` symmetric, eigenvalues in [0, 1), on the features' device.
    """
    z = as_matrix(features, "features")
    if not aperture > 0:
        raise EntangleValueError(f"aperture must be > 0, got {aperture}")
    if z.shape[0] == 0:
        raise EntangleValueError("conceptor: no features given; pass at least one labeled row")
    z64 = z.to(torch.float64)
    corr = z64.T @ z64 / z64.shape[0]
    evals, evecs = torch.linalg.eigh(corr)
    evals = evals.clamp_min(0.0)
    gains = evals / (evals + aperture**-2)
    c = (evecs * gains) @ evecs.T
    return ((c + c.T) / 2).to(z.dtype)


class ConceptorFactors:
    """A conceptor held as its eigen-factors: C = U diag(gains) U^T (see :func:`conceptor`).

    Computed in float64 from one symmetric eigendecomposition of the smaller Gram matrix of
    Y = Z / sqrt(N): with N < D, Y Y^T = W S^2 W^T (``[N, N]``) and V = Y^T W S^-1, so
    R = Y^T Y = V S^2 V^T and gains = s^2 / (s^2 + a^-2); otherwise R itself (``[D, D]``).
    The energies and the spectrum follow without forming C or a second eigendecomposition.
    Same quantities as :func:`conceptor`, :func:`energy_ratio` and
    :func:`conceptor_spectrum` up to rounding (~1e-15; a test holds them to 1e-12). What a
    probe set's :func:`~entangle.probing.probeset.summarize_subspace` pays at each
    evaluation: on 128 x 384 labeled rows ~3.5 ms against ~8.7 ms for the thin SVD this
    replaced (one thread, side by side; docs/performance.md).

    Args:
        features: ``[N, D]`` labeled features (not centred, as in the paper).
        aperture: a > 0.
    """

    def __init__(self, features: torch.Tensor, aperture: float = APERTURE):
        z = as_matrix(features, "features")
        if not aperture > 0:
            raise EntangleValueError(f"aperture must be > 0, got {aperture}")
        if z.shape[0] == 0:
            raise EntangleValueError("conceptor: no features given; pass at least one labeled row")
        y = z.to(torch.float64) / math.sqrt(z.shape[0])
        n, d = y.shape
        evals, vecs = torch.linalg.eigh(y @ y.T if n < d else y.T @ y)
        evals, vecs = evals.flip(0).clamp_min(0.0), vecs.flip(1)  # descending
        if n < d:
            # V = Y^T W S^-1, as unit columns: ||Y^T w|| = s, and a direction whose s is
            # rounding noise (repeated rows) keeps a unit column and a gain of ~0, as in the
            # SVD; an exactly zero column (zero rows) has no direction and is dropped
            vecs = y.T @ vecs
            norms = vecs.norm(dim=0)
            keep = norms > 0
            evals, vecs = evals[keep], vecs[:, keep] / norms[keep]
        self.dim = d
        self.gains = evals / (evals + aperture**-2)  # descending, the nonzero part of C's
        self.basis = vecs  # [D, r]

    def matrix(self) -> torch.Tensor:
        """The ``[D, D]`` conceptor (float64)."""
        return (self.basis * self.gains) @ self.basis.T

    def energy_ratio(self, features: torch.Tensor) -> torch.Tensor:
        """:func:`energy_ratio` of ``features`` ``[n, D]`` (float64; NaN for zero rows)."""
        z = as_matrix(features, "features").to(torch.float64)
        quad = (z @ self.basis.to(z.device)).pow(2) @ self.gains.to(z.device)
        sq = z.pow(2).sum(dim=1)
        ratio = torch.where(sq > 0, quad / torch.where(sq > 0, sq, 1.0), float("nan"))
        return ratio.clamp(0.0, 1.0)

    def spectrum(self) -> dict:
        """:func:`conceptor_spectrum` of C: ``eigenvalues`` (D, descending), quota, rank."""
        evals = torch.zeros(self.dim, dtype=torch.float64, device=self.gains.device)
        evals[: self.gains.shape[0]] = self.gains.clamp(0.0, 1.0)
        return _spectrum_summary(evals, self.dim)


def conceptor_spectrum(c: torch.Tensor) -> dict:
    """Eigenvalues and size summaries of a conceptor, to see when the known subspace is degenerate.

    Args:
        c: ``[D, D]`` conceptor.

    Returns:
        dict with ``eigenvalues`` ``[D]`` (descending, tensor), ``quota`` trace(C)/D in [0, 1]
        (1 means C is the identity and energy ratios carry no information) and
        ``effective_rank`` exp(entropy of the normalised eigenvalues).
    """
    c = as_tensor(c, "conceptor")
    _check_square(c)
    evals = torch.linalg.eigvalsh(c.to(torch.float64)).clamp(0.0, 1.0).flip(0)
    out = _spectrum_summary(evals, c.shape[0])
    out["eigenvalues"] = evals.to(compute_dtype(c.dtype))
    return out


def _spectrum_summary(evals: torch.Tensor, dim: int) -> dict:
    """Quota and effective rank of descending conceptor eigenvalues ``evals`` (float64)."""
    total = evals.sum()
    p = evals / total if total > 0 else evals
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {
        "eigenvalues": evals,
        "quota": float(total / dim),
        "effective_rank": float(entropy.exp()) if total > 0 else 0.0,
    }


def _check_square(c: torch.Tensor) -> None:
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise EntangleValueError(f"conceptor must be a square [D, D] tensor, got {tuple(c.shape)}")


def energy_ratio(features: torch.Tensor, conceptor: torch.Tensor, *, warn: bool = True):
    """Share of each row's energy inside the known-class subspace: clip(z^T C z / ||z||^2, 0, 1).

    Args:
        features: ``[n, D]``.
        conceptor: ``[D, D]`` from :func:`conceptor`.

    Returns:
        ``[n]`` in [0, 1]; NaN for zero rows.
    """
    z = as_matrix(features, "features")
    conceptor = as_tensor(conceptor, "conceptor")
    _check_square(conceptor)
    if conceptor.shape[0] != z.shape[1]:
        raise EntangleValueError(
            f"energy_ratio: conceptor is {tuple(conceptor.shape)} but features are "
            f"{tuple(z.shape)}; fit the conceptor on features of the same layer"
        )
    c = conceptor.to(device=z.device, dtype=z.dtype)
    quad = ((z @ c) * z).sum(dim=1)
    sq = z.pow(2).sum(dim=1)
    ratio = torch.where(sq > 0, quad / torch.where(sq > 0, sq, 1.0), float("nan"))
    ratio = ratio.clamp(0.0, 1.0)
    if warn:
        n_nan = int(torch.isnan(ratio).sum())
        if n_nan:
            warn_degenerate(f"energy_ratio: {n_nan} rows are all zero; their ratio is NaN")
    return ratio


# EAGC's epsilon in the EEP gate (the authors' ``mu + 1e-6``)
EEP_EPS = 1e-6


def eep_gate(energy: torch.Tensor, mu: torch.Tensor | float) -> torch.Tensor:
    """EEP's energy-adaptive gate clip(1 - E / (mu + 1e-6), 0, 1) (see docs/quantities.md).

    Rows with E >= mu (already looking known) get 0; a NaN energy gets 0.

    Args:
        energy: ``[n]`` energy ratios E(z_i).
        mu: the labeled-energy threshold (a scalar or 0-d tensor on ``energy``'s device).

    Returns:
        ``[n]`` gate in [0, 1]; EEP's weight is ``beta * gate`` on unlabeled rows.
    """
    gate = (1.0 - energy / (mu + EEP_EPS)).clamp(0.0, 1.0)
    return torch.nan_to_num(gate, nan=0.0)


# SimGCD's classifier temperature (defaults.SimGCDLoss.student_temperature, whose comment names
# its source): read by ``Probe`` when no ``logit_temperature`` is given
SIMGCD_LOGIT_TEMPERATURE = SIMGCD_LOSS.student_temperature


def free_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Logit free energy F(x) = -T logsumexp(logits / T); lower means more confident.

    Args:
        logits: ``[n, K]``.
        temperature: T > 0.

    Returns:
        ``[n]``.
    """
    logits = as_tensor(logits, "logits")
    if logits.ndim != 2:
        raise EntangleValueError(f"free_energy: expected logits [n, K], got {tuple(logits.shape)}")
    if not temperature > 0 or math.isinf(temperature):
        raise EntangleValueError(f"temperature must be a positive finite number, got {temperature}")
    x = logits.to(compute_dtype(logits.dtype))
    return -temperature * torch.logsumexp(x / temperature, dim=1)


def warn_if_identity_like(c: torch.Tensor, threshold: float = 0.9) -> None:
    """Warn when a conceptor is close to the identity (energy ratios near 1 for every row)."""
    quota = conceptor_spectrum(c)["quota"]
    if quota > threshold:
        warn_degenerate(
            f"conceptor quota is {quota:.2f} (close to the identity): energy ratios will be "
            "near 1 for every row and EEP will barely act; try a smaller aperture"
        )
