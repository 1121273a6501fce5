"""The run's conceptor aperture (a number or "auto") and its EEP diagnosis at the start."""

from __future__ import annotations

import torch

from entangle.data.datasets import GCDData, eval_inputs
from entangle.eagc import reference_features, resolve_aperture
from entangle.metrics.calibration import calibration_record


def start_calibration(
    config, data: GCDData, subset: torch.Tensor, model, labeled_features=None
) -> dict:
    """Resolve ``config.aperture`` and diagnose EEP on the run's starting features.

    Args:
        config: the run's ``TrainConfig`` (``aperture``, ``eep_weight``).
        data: the GCD data.
        subset: ``[m]`` indices of the probe set (labeled and unlabeled rows).
        model: the reference backbone (EAGC runs) or the starting backbone (baselines).
        labeled_features: ``[N, D]`` the reference's labeled features EAGC's conceptor was
            fit on; None for baselines, whose conceptor comes from the probe set's labeled rows.

    Returns:
        the calibration record (see docs/calibration.md): the diagnosis at the resolved
        aperture and at the one ``auto`` picks, plus ``requested`` and ``source``.
    """
    z = reference_features(model, [eval_inputs(data, subset)])
    labeled = data.labeled[subset].to(z.device)
    novel = data.novel[subset].to(z.device)
    source = "reference model, labeled training set"
    if labeled_features is None:
        labeled_features = z[labeled]
        source = "starting backbone, labeled rows of the probe set"
    labeled_features = labeled_features.to(z.device)
    aperture = resolve_aperture(config.aperture, labeled_features)
    record = calibration_record(
        labeled_features,
        z[~labeled],
        aperture=aperture,
        beta=config.eep_weight,
        novel=novel[~labeled],
    )
    return {"requested": config.aperture, "source": source} | record
