"""t-SNE maps in their own process: ``python -m entangle.report.tsne_worker JOB.npz ...``.

Started by :func:`entangle.report.maps.start_maps`, one process per core, each given its
share of the report's maps. For each ``JOB.npz`` it writes ``JOB.map.npz`` beside it, renamed
into place only when complete, so the report can count finished maps while the rest run.
It imports only numpy, openTSNE / scikit-learn and :mod:`entangle.report.tsne`, never torch
(which would cost each worker ~2 s of CPU before its first map).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from entangle.report.tsne import tsne_embed

MAP_SUFFIX = ".map.npz"


def result_path(job_file: Path) -> Path:
    """Where the map of ``job_file`` is written."""
    return job_file.with_name(job_file.name.removesuffix(".npz") + MAP_SUFFIX)


def write_job(path: Path, features, labels, *, seed: int, max_points: int, backend: str) -> None:
    """Save one map's input (``features [n, D]``, ``labels [n]``) and settings."""
    np.savez(
        path,
        features=features,
        labels=labels,
        seed=np.int64(seed),
        max_points=np.int64(max_points),
        backend=np.str_(backend),
    )


def run_job(job_file: Path) -> None:
    """Compute the map of ``job_file`` (one thread) and write it to :func:`result_path`."""
    with np.load(job_file, allow_pickle=False) as data:
        coords, kept = tsne_embed(
            data["features"],
            seed=int(data["seed"]),
            max_points=int(data["max_points"]),
            labels=data["labels"],
            backend=str(data["backend"]),
            threads=1,
        )
    out = result_path(job_file)
    # the folder is the report's own private temporary folder (mkdtemp, 0700)
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as fh:
        np.savez(fh, coords=coords, kept=kept)
    os.replace(partial, out)


def main(argv: list[str]) -> int:
    for job in argv:
        run_job(Path(job))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
