"""The numbers a report computes from saved features: per-epoch energies and t-SNE overlaps.

Both are cached by the features file's content (:mod:`entangle.report.cache`), and the t-SNE
maps of all runs are computed in worker processes (:mod:`entangle.report.maps`) while the
report computes the energies and draws its other figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from entangle.report.cache import ReportCache, cache_key, file_digest
from entangle.report.energy import (
    GROUPS,
    EpochEnergy,
    aperture_of,
    epoch_energy,
    logit_temperature_of,
)
from entangle.report.load import RunData
from entangle.report.maps import MapJob, start_maps
from entangle.report.plot_overlap import Overlap, compute_overlap, finite_rows
from entangle.report.tsne import resolve_backend


def feature_epochs(run: RunData) -> list[int]:
    """The early and the late saved epoch (one when only one was saved)."""
    epochs = run.reader.feature_epochs()
    if not epochs:
        return []
    return [epochs[0], epochs[-1]] if len(epochs) > 1 else [epochs[-1]]


def _digest(run: RunData, epoch: int) -> str | None:
    path = Path(run.reader.path) / "features" / f"epoch_{epoch:03d}.npz"
    try:
        return file_digest(path)
    except OSError:
        return None


def _energy_to_arrays(e: EpochEnergy) -> dict[str, np.ndarray]:
    arrays = {
        "quota": np.float64(e.quota),
        "effective_rank": np.float64(e.effective_rank),
        "note": np.str_(e.note),
        "eigenvalues": np.asarray([] if e.eigenvalues is None else e.eigenvalues),
        "has_eigenvalues": np.bool_(e.eigenvalues is not None),
    }
    arrays.update({f"ratio_{g}": v for g, v in e.ratio.items()})
    arrays.update({f"free_{g}": v for g, v in e.free.items()})
    return arrays


def _energy_from_arrays(
    a: dict, epoch: int, aperture: float, temperature: float
) -> EpochEnergy | None:
    try:
        return EpochEnergy(
            epoch=epoch,
            aperture=aperture,
            temperature=temperature,
            ratio={g: a[f"ratio_{g}"].astype(np.float64) for g in GROUPS if f"ratio_{g}" in a},
            free={g: a[f"free_{g}"].astype(np.float64) for g in GROUPS if f"free_{g}" in a},
            eigenvalues=a["eigenvalues"].astype(np.float64) if a["has_eigenvalues"] else None,
            quota=float(a["quota"]),
            effective_rank=float(a["effective_rank"]),
            note=str(a["note"]),
        )
    except (KeyError, ValueError, TypeError):
        return None


def _cached_energy(cache, digest, arrays, epoch, aperture, temperature) -> EpochEnergy:
    settings = {"aperture": aperture, "temperature": temperature}
    key = None if digest is None or cache is None else cache_key("energy", digest, settings)
    if key is not None:
        entry = cache.get(key)
        if entry is not None:
            energy = _energy_from_arrays(entry, epoch, aperture, temperature)
            if energy is not None:
                return energy
    energy = epoch_energy(arrays, epoch, aperture, temperature)
    if key is not None:
        cache.put(key, _energy_to_arrays(energy))
    return energy


class ReportMaps:
    """The t-SNE maps of a report's runs, computing in worker processes from
    :func:`start_report_maps` on; :meth:`overlaps` waits for them."""

    def __init__(self, runs, cache, *, max_points, backend, seed, workers, on_map, background):
        self.max_points, self.seed = max_points, seed
        self.backend = resolve_backend(backend)
        self.runs = list(runs)
        # (run index, arrays, epoch, finite rows, job) of each run's last saved epoch
        self.pending: list[tuple[int, dict, int, np.ndarray, MapJob]] = []
        for index, run in enumerate(self.runs):
            epochs = feature_epochs(run)
            if not epochs:
                continue
            arrays = run.reader.features(epochs[-1])
            rows = finite_rows(arrays)
            features = np.asarray(arrays["features"], dtype=np.float32)[rows]
            labels = np.asarray(arrays["labels"])[rows]
            job = MapJob(features, labels, seed, max_points, self.backend, _digest(run, epochs[-1]))
            self.pending.append((index, arrays, epochs[-1], rows, job))
        # maps need at least 5 finite rows; compute_overlap explains the others
        self.drawable = [p for p in self.pending if p[3].size >= 5]
        total = len(self.drawable)
        progress = None if on_map is None else (lambda done: on_map(done, total))
        self.maps = start_maps(
            [p[4] for p in self.drawable],
            cache,
            workers=workers,
            on_done=progress,
            background=background,
        )
        self._overlaps: list[Overlap | None] | None = None

    def arrays(self, index: int, epoch: int) -> dict | None:
        """The saved arrays of run ``index`` at ``epoch`` when already read, else None."""
        for i, arrays, e, _rows, _job in self.pending:
            if i == index and e == epoch:
                return arrays
        return None

    def overlaps(self) -> list[Overlap | None]:
        """One :class:`Overlap` (map and k-NN shares) or None per run; waits for the maps."""
        if self._overlaps is None:
            maps = self.maps.results()
            by_run = {p[0]: m for p, m in zip(self.drawable, maps, strict=True)}
            self._overlaps = [None] * len(self.runs)
            for index, arrays, epoch, _rows, _job in self.pending:
                self._overlaps[index] = compute_overlap(
                    arrays,
                    epoch,
                    max_points=self.max_points,
                    backend=self.backend,
                    seed=self.seed,
                    tsne_map=by_run.get(index),
                )
        return self._overlaps

    def close(self) -> None:
        self.maps.close()

    def __enter__(self) -> ReportMaps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_report_maps(
    runs: Sequence[RunData],
    cache: ReportCache | None,
    *,
    max_points: int,
    backend: str,
    seed: int,
    workers: int | None = None,
    on_map: Callable[[int, int], None] | None = None,
    background: bool = False,
) -> ReportMaps:
    """Start the t-SNE map of each run's last saved epoch; returns at once.

    Args:
        runs: the report's runs.
        cache: the report's cache (None: compute everything).
        max_points, backend, seed: t-SNE settings (:func:`entangle.report.tsne.tsne_embed`).
        workers: processes for the t-SNE maps (default: available cores).
        on_map: progress callback ``(maps done, maps in all)``.
        background: compute even a single map in a worker process
            (:func:`entangle.report.maps.start_maps`).
    """
    settings = {"max_points": max_points, "backend": backend, "seed": seed}
    return ReportMaps(
        runs, cache, workers=workers, on_map=on_map, background=background, **settings
    )


def report_energies(
    runs: Sequence[RunData], cache: ReportCache | None, maps: ReportMaps | None = None
) -> dict[str, list[EpochEnergy]]:
    """Energies of each run's early and late saved epochs, by run name (``maps``: arrays
    already read for the maps are not read again)."""
    energies: dict[str, list[EpochEnergy]] = {}
    for index, run in enumerate(runs):
        aperture = aperture_of(run.config, run.reader.meta)
        temperature = logit_temperature_of(run.config)
        energies[run.name] = []
        for epoch in feature_epochs(run):
            arrays = None if maps is None else maps.arrays(index, epoch)
            if arrays is None:
                arrays = run.reader.features(epoch)
            energies[run.name].append(
                _cached_energy(cache, _digest(run, epoch), arrays, epoch, aperture, temperature)
            )
    return energies


def report_numbers(
    runs: Sequence[RunData], cache: ReportCache | None, **settings
) -> tuple[dict[str, list[EpochEnergy]], list[Overlap | None]]:
    """Energies of each run's early and late saved epochs, and the t-SNE overlap of the late
    (the energies are computed while the maps run); ``settings`` as
    :func:`start_report_maps`.

    Returns:
        ``(energies by run name, one Overlap or None per run)``.
    """
    with start_report_maps(runs, cache, **settings) as maps:
        return report_energies(runs, cache, maps), maps.overlaps()


__all__ = ["ReportMaps", "feature_epochs", "report_energies", "report_numbers", "start_report_maps"]
