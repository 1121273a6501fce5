"""The demo's early t-SNE maps: computed while the next run trains, they are cache hits of the
report, and the report they give equals the one computed cold."""

from __future__ import annotations

import numpy as np

from entangle.report import build_report
from entangle.report.demo import EARLY_PREFIX, TSNE_SETTINGS, _EarlyMaps, _training_threads
from tests.report.fake_runs import make_run
from tests.report.test_cache import _html


def _maps(out) -> dict[str, dict[str, np.ndarray]]:
    """The report's cached t-SNE maps by entry name."""
    found = {}
    for path in sorted((out / "cache").glob("tsne-*.npz")):
        with np.load(path) as data:
            found[path.name] = {k: data[k] for k in data.files}
    return found


def test_early_maps_are_the_reports_cache_hits_and_give_the_cold_report(tmp_path, count_maps):
    runs = [
        make_run(tmp_path / "a", name="baseline", seed=1, n_steps=40),
        make_run(tmp_path / "b", name="eagc", eagc=True, seed=2, n_steps=40),
    ]
    settings = {"tsne_max_points": TSNE_SETTINGS["max_points"]}
    settings["tsne_backend"] = TSNE_SETTINGS["backend"]
    # cold: the report's own worker processes draw both maps
    cold = tmp_path / "cold"
    build_report(runs, cold, workers=2, **settings)
    assert count_maps == []

    early = _EarlyMaps(tmp_path / "demo", seed=0)
    try:
        for run in runs:
            early.start(run)
        early.finish()
        assert count_maps == []  # both drawn in worker processes, not here
        warm = tmp_path / "warm"
        # workers=1: any map the cache lacked would be drawn here and counted
        build_report(runs, warm, workers=1, cache_from=[early.folder], **settings)
    finally:
        early.close()
    assert count_maps == []
    assert not list((tmp_path / "demo").glob(f"{EARLY_PREFIX}*"))
    cold_maps, warm_maps = _maps(cold), _maps(warm)
    assert len(cold_maps) == 2 and cold_maps.keys() == warm_maps.keys()
    for name, arrays in cold_maps.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(warm_maps[name][key], value)
    assert _html(warm) == _html(cold)
    assert {p.name: p.read_bytes() for p in warm.glob("*.png")} == {
        p.name: p.read_bytes() for p in cold.glob("*.png")
    }


def test_training_leaves_a_core_to_a_running_map_worker():
    assert _training_threads(2, maps_running=True) == 1
    assert _training_threads(1, maps_running=True) == 1
    assert _training_threads(2, maps_running=False) == 2
