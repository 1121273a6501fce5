"""The report's t-SNE maps: one per run, cached by content, computed in parallel processes.

t-SNE dominates a report's cost. Each map runs single-threaded (openTSNE's threads spin at
their barriers and gain little on small maps), so several maps run side by side in worker
processes, one per available core; a map already in the cache (same features file, same
settings, same library versions) is read instead of recomputed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from entangle.report.cache import ReportCache, cache_key
from entangle.report.tsne import available_cores, resolve_backend, tsne_embed


@dataclass
class MapJob:
    """One t-SNE map to draw: ``features [n, D]`` (finite rows), ``labels [n]``."""

    features: np.ndarray
    labels: np.ndarray
    seed: int
    max_points: int
    backend: str
    digest: str | None = None  # content hash of the features file, None: not cacheable

    def key(self) -> str | None:
        if self.digest is None:
            return None
        settings = {
            "rows": int(self.features.shape[0]),
            "seed": self.seed,
            "max_points": self.max_points,
            "backend": self.backend,
            "versions": _versions(self.backend),
        }
        return cache_key("tsne", self.digest, settings)


def _versions(backend: str) -> dict[str, str]:
    from entangle import __version__

    names = ["numpy", "scikit-learn"] + (["openTSNE"] if backend == "opentsne" else [])
    out = {"entangle": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _embed(job: MapJob) -> tuple[np.ndarray, np.ndarray]:
    return tsne_embed(
        job.features,
        seed=job.seed,
        max_points=job.max_points,
        labels=job.labels,
        backend=job.backend,
        threads=1,
    )


def worker_env(*, single_thread: bool = True) -> dict[str, str]:
    """This process's environment for a child ``python -m entangle...`` that must import this
    same entangle, installed or not (tests run from a checkout); ``single_thread`` caps the
    child's OpenMP / BLAS threads at one (the children themselves are the parallelism)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if single_thread:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = "1"
    return env


def _embed_in_processes(jobs: Sequence[MapJob], workers: int, store) -> None:
    """Run each job in a fresh ``python -m entangle.report.tsne_worker`` process.

    Separate interpreters, not multiprocessing: spawn and forkserver re-run the caller's main
    script (a user's unguarded script would start again), and fork copies a process that
    already runs torch's and BLAS's threads.
    """
    env = worker_env()
    with tempfile.TemporaryDirectory(prefix="entangle-tsne-") as folder:
        queue = list(range(len(jobs)))
        running: dict[int, tuple[subprocess.Popen, Path]] = {}
        while queue or running:
            while queue and len(running) < workers:
                i = queue.pop(0)
                job_file = Path(folder) / f"job{i}.npz"
                write_job(job_file, jobs[i])
                result = Path(folder) / f"map{i}.npz"
                cmd = [sys.executable, "-m", "entangle.report.tsne_worker", job_file, result]
                proc = subprocess.Popen(
                    [str(c) for c in cmd],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                running[i] = (proc, result)
            i = next(iter(running))
            proc, result = running.pop(i)
            proc.communicate()
            value = read_map(result) if proc.returncode == 0 else None
            # a worker that could not run (a broken environment): draw the map here instead
            store(i, value if value is not None else _embed(jobs[i]))


def write_job(path: Path, job: MapJob) -> None:
    """Save a job for :mod:`entangle.report.tsne_worker`."""
    np.savez(
        path,
        features=job.features,
        labels=job.labels,
        seed=np.int64(job.seed),
        max_points=np.int64(job.max_points),
        backend=np.str_(job.backend),
    )


def read_job(path: Path) -> MapJob:
    """The job :func:`write_job` saved."""
    with np.load(path, allow_pickle=False) as data:
        return MapJob(
            data["features"],
            data["labels"],
            int(data["seed"]),
            int(data["max_points"]),
            str(data["backend"]),
        )


def read_map(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(coords, kept)`` a worker saved, or None when it saved nothing readable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["coords"].astype(np.float64), data["kept"].astype(np.int64)
    except (OSError, ValueError, KeyError):
        return None


def tsne_maps(
    jobs: Sequence[MapJob],
    cache: ReportCache | None = None,
    *,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(coords [m, 2], kept [m])`` for every job, from the cache or computed.

    Args:
        jobs: the maps to draw; their ``backend`` must already be resolved
            (:func:`entangle.report.tsne.resolve_backend`).
        cache: where finished maps are looked up and stored (None: no cache).
        workers: processes for the maps still to compute (default: available cores; 1 runs
            them in this process).
        on_done: called with the number of maps finished so far, after each one.
    """
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):
        key = job.key()
        entry = cache.get(key) if cache is not None and key is not None else None
        if entry is not None and {"coords", "kept"} <= set(entry):
            results[i] = (entry["coords"].astype(np.float64), entry["kept"].astype(np.int64))
        else:
            todo.append(i)
    finished = len(jobs) - len(todo)
    if on_done is not None and finished:
        on_done(finished)

    def store(i, value):
        nonlocal finished
        results[i] = value
        key = jobs[i].key()
        if cache is not None and key is not None:
            cache.put(key, {"coords": value[0], "kept": value[1]})
        finished += 1
        if on_done is not None:
            on_done(finished)

    workers = min(workers or available_cores(), len(todo))
    if workers <= 1:
        for i in todo:
            store(i, _embed(jobs[i]))
    else:
        _embed_in_processes([jobs[i] for i in todo], workers, lambda k, v: store(todo[k], v))
    return results  # type: ignore[return-value]


__all__ = ["MapJob", "resolve_backend", "tsne_maps"]
