"""The report's map workers: shares balanced by rows, no torch in a worker, early exit cleans."""

from __future__ import annotations

import numpy as np

from entangle.report import tsne as tsne_module
from entangle.report.maps import MapJob, _shares, start_maps


def test_shares_give_every_worker_a_balanced_load():
    sizes = [1000, 1000, 1000, 1000, 1000, 1000]
    shares = _shares(sizes, 2)
    assert sorted(len(s) for s in shares) == [3, 3]
    assert sorted(i for s in shares for i in s) == list(range(6))
    # one large map and several small: the large one gets a worker of its own
    shares = _shares([5000, 1000, 1000, 1000], 2)
    assert [0] in shares
    assert _shares([10], 4) == [[0]]


def test_leaving_early_stops_the_workers_and_removes_their_folder():
    rng = np.random.default_rng(0)
    backend = tsne_module.resolve_backend("auto")
    jobs = [MapJob(rng.normal(size=(200, 8)), np.arange(200) % 2, s, 200, backend) for s in (0, 1)]
    with start_maps(jobs, workers=2) as maps:
        folder, procs = maps._folder, list(maps._procs)
        assert folder is not None and folder.is_dir() and len(procs) == 2
    assert all(p.poll() is not None for p in procs)
    assert not folder.exists()
