"""The conceptor a run's step energies use, named and described for run.json.

EAGC runs use EEP's own conceptor (fitted on the reference model's labeled features). A
baseline has no EEP; it gets the conceptor of its starting model's labeled features, fixed
for the whole run, so baseline and EAGC step energies are measured the same way (see
docs/quantities.md, "Which conceptor").
"""

from __future__ import annotations

import torch

from entangle.data.datasets import GCDData
from entangle.eagc import EAGC
from entangle.gcd.setup import labeled_loader
from entangle.metrics import conceptor as fit_conceptor
from entangle.metrics import conceptor_spectrum, energy_ratio
from entangle.nn.features import reference_features

NAMES = {
    "eep": "EEP's conceptor (reference model, labeled training set)",
    "known_subspace": "starting model's conceptor (labeled training set), fixed",
}


def describe_conceptor(c: torch.Tensor, *, name: str, aperture: float, mu=None) -> dict:
    """run.json's ``conceptor`` entry: name, source, aperture, spectrum (docs/records.md).

    Args:
        c: ``[D, D]`` the conceptor.
        name: ``"eep"`` or ``"known_subspace"`` (the step records' ``energy.conceptor``).
        aperture: the aperture it was fitted with.
        mu: EEP's initial mu (mean labeled energy under ``c``), when known.
    """
    spectrum = conceptor_spectrum(c)
    out = {
        "name": name,
        "source": NAMES[name],
        "aperture": float(aperture),
        "eigenvalues": spectrum["eigenvalues"].double().cpu().tolist(),
        "quota": spectrum["quota"],
        "effective_rank": spectrum["effective_rank"],
    }
    if mu is not None:
        out["mu"] = float(mu)
    return out


def run_conceptor(
    data: GCDData, backbone, eagc: EAGC | None, *, aperture: float, batch_size: int, seed: int
) -> tuple[torch.Tensor | None, dict]:
    """The conceptor of the run's step energies and its run.json description.

    Returns:
        ``(known_subspace, meta)``: ``known_subspace`` is None for an EAGC run (the Probe reads
        EEP's conceptor from the EAGC), else ``[D, D]`` fitted on ``backbone``'s (the starting
        weights') labeled features with ``aperture``.
    """
    if eagc is not None:
        meta = describe_conceptor(eagc.conceptor, name="eep", aperture=aperture, mu=eagc.mu)
        return None, meta
    device = next(backbone.parameters()).device
    loader = labeled_loader(data, batch_size, device, None, seed)
    z = reference_features(backbone, [x for x, _ in loader])
    c = fit_conceptor(z, aperture)
    mu = energy_ratio(z, c, warn=False).nanmean()
    return c, describe_conceptor(c, name="known_subspace", aperture=aperture, mu=mu)
