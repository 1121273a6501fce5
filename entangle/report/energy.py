"""Energy quantities of one saved feature epoch, computed with :mod:`entangle.metrics.energy`.

The conceptor is fitted on the labeled rows of the same epoch, so the energy ratio says how
much of each sample lies in the subspace the known classes occupy at that point of training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from entangle.defaults import APERTURE
from entangle.metrics import conceptor, conceptor_spectrum, energy_ratio, free_energy

DEFAULT_APERTURE = APERTURE
# a conceptor this close to the identity makes every energy ratio close to 1 (docs/quantities.md)
IDENTITY_QUOTA = 0.9
GROUPS = ("labeled", "unlabeled_old", "unlabeled_new")
GROUP_LABELS = {
    "labeled": "labeled",
    "unlabeled_old": "unlabeled, old classes",
    "unlabeled_new": "unlabeled, new classes",
}


@dataclass
class EpochEnergy:
    """Energy ratio and free energy per sample group of one epoch.

    ``ratio[group]`` / ``free[group]`` are ``[n_group]`` float64 arrays (NaN rows dropped);
    ``free`` is empty when the epoch saved neither logits nor energies.
    """

    epoch: int
    aperture: float
    temperature: float = 1.0
    ratio: dict[str, np.ndarray] = field(default_factory=dict)
    free: dict[str, np.ndarray] = field(default_factory=dict)
    eigenvalues: np.ndarray | None = None
    quota: float = math.nan
    effective_rank: float = math.nan
    note: str = ""


def aperture_of(config, meta: Mapping | None = None) -> float:
    """The conceptor aperture of a run: the resolved one in run.json's ``calibration`` (an
    ``auto`` run), else ``config["aperture"]`` (or under ``eagc``), else 2.0."""
    resolved = (meta or {}).get("calibration", {}).get("aperture")
    if isinstance(resolved, int | float) and resolved > 0:
        return float(resolved)
    if isinstance(config, Mapping):
        for node in (config, config.get("eagc")):
            if isinstance(node, Mapping):
                value = node.get("aperture")
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    return float(value)
    return DEFAULT_APERTURE


def logit_temperature_of(config) -> float:
    """T the run's classifier softmax divides its logits by: ``student_temperature`` in the
    config (SimGCD: 0.1), else 1.0 (the saved logits as they are)."""
    if isinstance(config, Mapping):
        for node in (config, config.get("loss")):
            if isinstance(node, Mapping):
                value = node.get("student_temperature")
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    return float(value)
    return 1.0


def run_conceptor_of(meta: Mapping | None) -> dict | None:
    """run.json's ``conceptor`` entry (the conceptor of the step energies), if recorded."""
    entry = (meta or {}).get("conceptor")
    if isinstance(entry, Mapping) and isinstance(entry.get("eigenvalues"), list):
        return dict(entry)
    return None


def run_conceptor_note(meta: Mapping | None) -> str:
    """What the run's own conceptor says about EEP: near the identity, EEP barely acts."""
    entry = run_conceptor_of(meta)
    if entry is None or not isinstance(entry.get("quota"), int | float):
        return ""
    name = "EEP's conceptor" if entry.get("name") == "eep" else "the starting model's conceptor"
    if entry["quota"] > IDENTITY_QUOTA:
        tail = "EEP barely acts" if entry.get("name") == "eep" else "EEP would barely act"
        return f"{name} has quota {entry['quota']:.2f} (close to the identity): {tail}"
    return ""


def group_masks(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean ``[n]`` masks of labeled, unlabeled-old and unlabeled-new rows."""
    labeled = np.asarray(arrays["labeled"], dtype=bool)
    novel = np.asarray(arrays["novel"], dtype=bool)
    return {
        "labeled": labeled,
        "unlabeled_old": ~labeled & ~novel,
        "unlabeled_new": ~labeled & novel,
    }


def epoch_energy(
    arrays: Mapping[str, np.ndarray], epoch: int, aperture: float, temperature: float = 1.0
) -> EpochEnergy:
    """Energy ratio (conceptor of the labeled rows) and logit free energy per group.

    Args:
        arrays: one ``RunReader.features()`` dict: ``features [n, D]``, ``labeled [n]``,
            ``novel [n]``, optional ``logits [n, K]`` or ``energy [n]``.
        epoch: the epoch the arrays belong to.
        aperture: conceptor aperture.
        temperature: the classifier's softmax temperature T; free energy -logsumexp(logits / T).

    Returns:
        an :class:`EpochEnergy`; with no labeled rows only the free energy is filled and
        ``note`` says why.
    """
    out = EpochEnergy(epoch=epoch, aperture=aperture, temperature=temperature)
    features = np.asarray(arrays["features"], dtype=np.float32)
    z = torch.from_numpy(features)
    masks = group_masks(arrays)
    # a run trained with --on-nan continue saves NaN features: one NaN row would make the
    # eigendecomposition fail (or every number NaN), so only finite rows fit the conceptor
    finite = np.isfinite(features).all(axis=1) if features.ndim == 2 else np.zeros(0, bool)
    fit = masks["labeled"] & finite
    if fit.any():
        c = conceptor(z[torch.from_numpy(fit)], aperture=aperture)
        spectrum = conceptor_spectrum(c)
        out.eigenvalues = spectrum["eigenvalues"].double().numpy()
        out.quota = spectrum["quota"]
        out.effective_rank = spectrum["effective_rank"]
        # zero rows give NaN ratios; they are dropped below and do not need a warning here
        ratio = energy_ratio(z, c, warn=False).double().numpy()
        out.ratio = {g: _finite(ratio[m]) for g, m in masks.items()}
        if out.quota > IDENTITY_QUOTA:
            out.note = (
                f"epoch-refit conceptor quota {out.quota:.2f} (close to the identity): energy "
                "ratios under it are near 1 for every sample; a smaller aperture would help"
            )
    elif masks["labeled"].any():
        out.note = (
            "every labeled row's features are non-finite (NaN or inf; a run that went on "
            "after non-finite losses): the known-class conceptor cannot be fitted"
        )
    else:
        out.note = "no labeled rows saved: the known-class conceptor cannot be fitted"
    dropped = int(features.shape[0] - finite.sum()) if features.ndim == 2 else 0
    if dropped and fit.any():
        out.note = "; ".join(
            n for n in (out.note, f"{dropped} rows with non-finite features left out") if n
        )
    free = _free_energy(arrays, temperature)
    if free is not None:
        out.free = {g: _finite(free[m]) for g, m in masks.items()}
    return out


def _free_energy(arrays: Mapping[str, np.ndarray], temperature: float) -> np.ndarray | None:
    if "logits" in arrays and np.asarray(arrays["logits"]).ndim == 2:
        logits = torch.from_numpy(np.asarray(arrays["logits"], dtype=np.float32))
        return free_energy(logits / temperature).double().numpy()
    if "energy" in arrays and np.asarray(arrays["energy"]).ndim == 1:
        return np.asarray(arrays["energy"], dtype=np.float64)
    return None


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]
