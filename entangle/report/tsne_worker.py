"""One t-SNE map in its own process: ``python -m entangle.report.tsne_worker JOB.npz OUT.npz``.

Started by :func:`entangle.report.maps.tsne_maps` so that several maps run side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from entangle.report.maps import _embed, read_job


def main(argv: list[str]) -> int:
    job_file, out = Path(argv[0]), Path(argv[1])
    coords, kept = _embed(read_job(job_file))
    np.savez(out, coords=coords, kept=kept)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
