"""The report's t-SNE maps: one per run, cached by content, computed in parallel processes.

t-SNE dominates a report's cost. Each map runs single-threaded (openTSNE's threads spin at
their barriers and gain little on small maps), so the maps run in worker processes, one per
available core, each given a share of them, while the report draws its other figures; a map
already in the cache (same features file, same settings, same library versions) is read
instead of recomputed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from entangle.report.cache import ReportCache, cache_key
from entangle.report.tsne import (
    available_cores,
    neighbors,
    resolve_backend,
    schedule,
    tsne_embed,
)
from entangle.report.tsne_worker import result_path, write_job


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
        points = min(self.max_points, int(self.features.shape[0]))
        settings = {
            "rows": int(self.features.shape[0]),
            "seed": self.seed,
            "max_points": self.max_points,
            "backend": self.backend,
            # the optimiser's iterations: a map cached under another schedule is not this one
            "schedule": list(schedule(points)),
            # exact or approximate neighbours: the affinities differ
            "neighbors": neighbors(points),
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


def read_map(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(coords, kept)`` a worker saved, or None when it saved nothing readable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["coords"].astype(np.float64), data["kept"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _shares(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Job indices per worker: largest first, each to the least loaded worker (by rows)."""
    shares: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        w = load.index(min(load))
        shares[w].append(i)
        load[w] += sizes[i]
    return [share for share in shares if share]


class MapsInFlight:
    """The maps of :func:`start_maps`: cached ones already read, the others computing in worker
    processes while the caller does other work; :meth:`results` waits for them.

    Use as a context manager: leaving it early stops the workers and removes their folder.
    """

    def __init__(self, jobs, cache, workers, on_done, background=False):
        self.jobs = list(jobs)
        self.cache = cache
        self.on_done = on_done
        self._results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(self.jobs)
        self._todo: list[int] = []
        for i, job in enumerate(self.jobs):
            key = job.key()
            entry = cache.get(key) if cache is not None and key is not None else None
            if entry is not None and {"coords", "kept"} <= set(entry):
                coords, kept = entry["coords"], entry["kept"]
                self._results[i] = (coords.astype(np.float64), kept.astype(np.int64))
            else:
                self._todo.append(i)
        self._reported = 0
        self._lock = threading.Lock()
        self._report(len(self.jobs) - len(self._todo))
        self._folder: Path | None = None
        self._procs: list[subprocess.Popen] = []
        self._files: dict[int, Path] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        workers = min(workers or available_cores(), len(self._todo))
        # one worker is worth a process only when the caller has other work meanwhile
        if workers > 1 or (background and workers == 1):
            self._start(workers)

    def _report(self, done: int) -> None:
        """Call ``on_done`` once for every map finished since the last call."""
        with self._lock:
            while self._reported < done:
                self._reported += 1
                if self.on_done is not None:
                    self.on_done(self._reported)

    def _start(self, workers: int) -> None:
        """Separate interpreters, not multiprocessing: spawn and forkserver re-run the caller's
        main script (a user's unguarded script would start again), and fork copies a process
        that already runs torch's and BLAS's threads."""
        self._folder = Path(tempfile.mkdtemp(prefix="entangle-tsne-"))
        for i in self._todo:
            job = self.jobs[i]
            self._files[i] = self._folder / f"job{i}.npz"
            write_job(
                self._files[i],
                job.features,
                job.labels,
                seed=job.seed,
                max_points=job.max_points,
                backend=job.backend,
            )
        env = worker_env()
        sizes = [self.jobs[i].features.shape[0] for i in self._todo]
        for share in _shares(sizes, workers):
            cmd = [sys.executable, "-m", "entangle.report.tsne_worker"]
            cmd += [str(self._files[self._todo[k]]) for k in share]
            self._procs.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        cached = len(self.jobs) - len(self._todo)
        results = [result_path(f) for f in self._files.values()]

        def watch():
            # counts finished maps for the progress line while the caller renders figures
            while not self._stop.wait(0.2):
                self._report(cached + sum(p.exists() for p in results))
                if all(proc.poll() is not None for proc in self._procs):
                    return

        if self.on_done is not None:
            self._watcher = threading.Thread(target=watch, daemon=True)
            self._watcher.start()

    def results(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(coords [m, 2], kept [m])`` for every job, waiting for the workers."""
        for proc in self._procs:
            proc.wait()
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        done = len(self.jobs) - len(self._todo)
        # maps are stored in job order so that progress reaches every count exactly once
        for i in self._todo:
            value = read_map(result_path(self._files[i])) if i in self._files else None
            # a worker that could not run (a broken environment): draw the map here instead
            self._results[i] = value if value is not None else _embed(self.jobs[i])
            key = self.jobs[i].key()
            if self.cache is not None and key is not None:
                self.cache.put(key, {"coords": self._results[i][0], "kept": self._results[i][1]})
            done += 1
            self._report(done)
        self._todo = []
        self.close()
        return self._results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop workers still running and remove their folder."""
        self._stop.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> MapsInFlight:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_maps(
    jobs: Sequence[MapJob],
    cache: ReportCache | None = None,
    *,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
    background: bool = False,
) -> MapsInFlight:
    """Read the cached maps of ``jobs`` and start computing the others; returns at once.

    Args:
        jobs: the maps to draw; their ``backend`` must already be resolved
            (:func:`entangle.report.tsne.resolve_backend`).
        cache: where finished maps are looked up and stored (None: no cache).
        workers: processes for the maps still to compute, each given a share of them
            (default: available cores; 1 computes them in this process, in ``results()``).
        on_done: called with the number of maps finished so far, once per map (from a
            watcher thread while the workers run).
        background: compute even a single map in a worker process (the caller has other
            work meanwhile, e.g. the demo training its next run).
    """
    return MapsInFlight(jobs, cache, workers, on_done, background)


def tsne_maps(
    jobs: Sequence[MapJob],
    cache: ReportCache | None = None,
    *,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(coords [m, 2], kept [m])`` for every job, from the cache or computed; arguments as
    :func:`start_maps`."""
    with start_maps(jobs, cache, workers=workers, on_done=on_done) as maps:
        return maps.results()


__all__ = ["MapJob", "MapsInFlight", "resolve_backend", "start_maps", "tsne_maps"]
