"""entangle.report.tsne_worker: a job file in, its map beside it, and no torch in the worker."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from entangle.report.maps import worker_env
from entangle.report.tsne import tsne_embed
from entangle.report.tsne_worker import MAP_SUFFIX, main, result_path, write_job


def test_a_worker_process_does_not_import_torch():
    code = "import sys, entangle.report.tsne_worker; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=worker_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_result_path_sits_beside_the_job(tmp_path):
    assert result_path(tmp_path / "map_03.npz") == tmp_path / f"map_03{MAP_SUFFIX}"


def test_a_job_written_and_run_gives_the_same_map_as_in_process(tmp_path):
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (20, 5)), rng.normal(6, 1, (20, 5))])
    labels = np.repeat([0, 1], 20)
    job = tmp_path / "map_00.npz"
    write_job(job, features, labels, seed=3, max_points=30, backend="auto")
    assert main([str(job)]) == 0
    with np.load(result_path(job)) as out:
        coords, kept = out["coords"], out["kept"]
    expected, expected_kept = tsne_embed(
        features, seed=3, max_points=30, labels=labels, backend="auto", threads=1
    )
    assert coords.shape == (len(kept), 2) and len(kept) <= 30
    np.testing.assert_array_equal(kept, expected_kept)
    np.testing.assert_allclose(coords, expected)
    assert not list(tmp_path.glob("*.part"))  # renamed into place when complete
