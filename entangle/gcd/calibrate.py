"""The run's conceptor aperture (a number, "auto" or "jaeger") and its EEP diagnosis at start."""

from __future__ import annotations

import torch

from entangle.data.datasets import GCDData, eval_inputs
from entangle.metrics.calibration import auto_aperture, calibration_record, resolve_aperture
from entangle.nn.features import reference_features


def unlabeled_reference_features(data: GCDData, model, batch_size: int = 256) -> torch.Tensor:
    """``[M, D]`` features of every unlabeled training row under ``model`` (test transform).

    What ``aperture="auto"`` compares the labeled features with: known to a GCD method
    (the unlabeled inputs), with no use of which rows are novel.
    """
    rows = torch.nonzero(~data.labeled).flatten()
    batches = (
        eval_inputs(data, rows[i : i + batch_size]) for i in range(0, rows.numel(), batch_size)
    )
    return reference_features(model, batches)


def resolve_run_aperture(config, data: GCDData, labeled_features, model) -> tuple:
    """``(aperture, auto)``: ``config.aperture`` resolved, and what ``auto`` picks (or None).

    For ``"auto"`` the unlabeled side is every unlabeled training row through ``model`` (the
    reference for EAGC runs), and ``auto`` is that value. Otherwise no extra pass is made
    (``auto`` None): the record then computes it on the probe set's unlabeled rows.
    """
    if config.aperture != "auto":
        return resolve_aperture(config.aperture, labeled_features), None
    unlabeled = unlabeled_reference_features(data, model).to(labeled_features.device)
    auto = auto_aperture(labeled_features, unlabeled)
    return auto, auto


def start_calibration(
    config, data: GCDData, subset: torch.Tensor, model, labeled_features=None, aperture=None
) -> dict:
    """Resolve ``config.aperture`` and diagnose EEP on the run's starting features.

    Args:
        config: the run's ``TrainConfig`` (``aperture``, ``eep_weight``).
        data: the GCD data.
        subset: ``[m]`` indices of the probe set (labeled and unlabeled rows).
        model: the reference backbone (EAGC runs) or the starting backbone (baselines).
        labeled_features: ``[N, D]`` the reference's labeled features EAGC's conceptor was
            fit on; None for baselines, whose conceptor comes from the probe set's labeled rows.
        aperture: ``(aperture, auto)`` already resolved (EAGC runs: the EAGC's), else None.

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
    if aperture is None:
        aperture = resolve_run_aperture(config, data, labeled_features, model)
    auto_rows = "unlabeled training rows" if aperture[1] is not None else "probe set"
    record = calibration_record(
        labeled_features,
        z[~labeled],
        aperture=aperture[0],
        beta=config.eep_weight,
        novel=novel[~labeled],
        auto=aperture[1],
    )
    meta = {"requested": config.aperture, "source": source, "auto_unlabeled": auto_rows}
    return meta | record
