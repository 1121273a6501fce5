"""A finished run directory's records as TensorBoard scalars and histograms (``entangle export``).

The tags and the writer are the live Probe's (entangle.probing.tensorboard, docs/records.md
"TensorBoard tags"); needs the ``tensorboard`` package (the ``[tb]`` extra).
"""

from __future__ import annotations

from pathlib import Path

from entangle.probing.tensorboard import (
    EPOCH_PREFIX,
    HISTOGRAM_PREFIX,
    TensorBoardOut,
    class_attribution,
    record_scalars,
)
from entangle.report.energy import aperture_of, epoch_energy
from entangle.report.output import atomic_output_dir
from entangle.runs import keys
from entangle.runs.directory import RunReader

__all__ = ["EXPORT_MARKER", "TensorBoardOut", "class_attribution", "export_run", "record_scalars"]

# marks a log directory written by export_run, which a later export may replace
EXPORT_MARKER = ".entangle-tensorboard"


def export_run(run_dir, log_dir, *, histogram_every: int = 10) -> dict:
    """Write an existing run directory's records to a TensorBoard log directory, replacing
    an earlier export there.

    Step and epoch records become the same scalars a live ``Probe(tensorboard=)`` writes
    (the attribution's per-class sums named by the run's class names included:
    :func:`entangle.probing.tensorboard.class_attribution`), and a custom-scalars layout
    overlaying raw and corrected series (:func:`entangle.probing.tensorboard.overlay_layout`);
    docs/records.md lists the tags.
    Per-row arrays of probed steps are not stored in a run, so the histograms here are those
    of each saved feature epoch: energy ratios (conceptor refitted on that epoch's labeled
    features, the run's aperture) and free energies per sample group, at the epoch's step.
    ``histogram_every`` does not apply to them.

    TensorBoard reads every event file in a folder, so writing beside an earlier export
    would show each series twice. The events are written into a fresh temporary folder next
    to ``log_dir`` that replaces it once complete
    (:func:`entangle.report.output.atomic_output_dir`); ``log_dir`` must be new, empty, or an
    earlier export (marked by :data:`EXPORT_MARKER`).

    Returns:
        ``{"steps", "epochs", "histogram_epochs"}`` counts written.
    """
    from entangle import __version__

    reader = RunReader(run_dir)
    target = atomic_output_dir(
        Path(log_dir),
        kind="TensorBoard export",
        marker=EXPORT_MARKER,
        generator=f"entangle {__version__}",
    )
    with target as tmp:
        saved = _export_into(reader, tmp, histogram_every)
    return {
        "steps": len(reader.steps),
        "epochs": len(reader.epochs),
        "histogram_epochs": len(saved),
    }


def _export_into(reader: RunReader, log_dir: Path, histogram_every: int) -> list[int]:
    """Write ``reader``'s records into the fresh folder ``log_dir``; the saved feature epochs."""
    names = (reader.config or {}).get("class_names")
    out = TensorBoardOut(log_dir, histogram_every=histogram_every, class_names=names)
    try:
        for record in reader.steps:
            out.write_step(record)  # with its per-class attribution, as the live sink
        epoch_steps = {}
        for record in reader.epochs:
            out.write_epoch(record)
            at = record.get(keys.STEP, record.get(keys.EPOCH, 0))
            epoch_steps[record.get(keys.EPOCH)] = int(at)
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
    return saved
