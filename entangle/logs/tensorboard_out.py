"""A finished run directory's records as TensorBoard scalars and histograms (``entangle export``).

The tags and the writer are the live Probe's (entangle.probing.tensorboard, docs/records.md
"TensorBoard tags"); needs the ``tensorboard`` package (the ``[tb]`` extra).
"""

from __future__ import annotations

from entangle.probing.tensorboard import (
    EPOCH_PREFIX,
    HISTOGRAM_PREFIX,
    TensorBoardOut,
    record_scalars,
)
from entangle.report.energy import aperture_of, epoch_energy
from entangle.runs.directory import RunReader

__all__ = ["TensorBoardOut", "export_run", "record_scalars"]


def export_run(run_dir, log_dir, *, histogram_every: int = 10) -> dict:
    """Write an existing run directory's records to a TensorBoard log directory.

    Step and epoch records become the same scalars a live ``Probe(tensorboard=)`` writes.
    Per-row arrays of probed steps are not stored in a run, so the histograms here are those
    of each saved feature epoch: energy ratios (conceptor refitted on that epoch's labeled
    features, the run's aperture) and free energies per sample group, at the epoch's step.
    ``histogram_every`` does not apply to them.

    Returns:
        ``{"steps", "epochs", "histogram_epochs"}`` counts written.
    """
    reader = RunReader(run_dir)
    out = TensorBoardOut(log_dir, histogram_every=histogram_every)
    try:
        for record in reader.steps:
            out.write_step(record)
        epoch_steps = {}
        for record in reader.epochs:
            out.write_epoch(record)
            epoch_steps[record.get("epoch")] = int(record.get("step", record.get("epoch", 0)))
        aperture = aperture_of(reader.config, reader.meta)
        saved = reader.feature_epochs()
        for epoch in saved:
            energy = epoch_energy(reader.features(epoch), epoch, aperture)
            step = epoch_steps.get(epoch, epoch)
            for kind, groups in (("energy_ratio", energy.ratio), ("free_energy", energy.free)):
                for group, values in groups.items():
                    out.write_histogram(
                        f"{EPOCH_PREFIX}/{HISTOGRAM_PREFIX}/{kind}/{group}", values, step
                    )
    finally:
        out.close()
    return {
        "steps": len(reader.steps),
        "epochs": len(reader.epochs),
        "histogram_epochs": len(saved),
    }
