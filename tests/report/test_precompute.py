"""entangle.report.precompute: which epochs a report reads, energies cached by content, maps."""

from __future__ import annotations

import numpy as np
import pytest

from entangle.report import precompute
from entangle.report.cache import ReportCache
from entangle.report.energy import aperture_of, epoch_energy, logit_temperature_of
from entangle.report.load import load_runs
from tests.report.fake_runs import make_run


@pytest.mark.parametrize(
    "saved, read", [((0, 2), [0, 2]), ((0, 1, 2), [0, 2]), ((1,), [1]), ((), [])]
)
def test_feature_epochs_are_the_early_and_the_late_one(tmp_path, saved, read):
    path = make_run(tmp_path / "r", name="r", n_steps=5, n_per_class=6, feature_epochs=saved)
    (run,) = load_runs([path])
    assert precompute.feature_epochs(run) == read


def _same(a, b):
    assert (a.epoch, a.aperture, a.temperature) == (b.epoch, b.aperture, b.temperature)
    assert a.ratio.keys() == b.ratio.keys() and a.free.keys() == b.free.keys()
    for group in a.ratio:
        np.testing.assert_allclose(a.ratio[group], b.ratio[group])
    np.testing.assert_allclose(a.quota, b.quota)


def test_energies_equal_the_direct_computation_and_come_back_from_the_cache(tmp_path, monkeypatch):
    path = make_run(tmp_path / "r", name="r", eagc=True, n_steps=5, n_per_class=8)
    runs = load_runs([path])
    run = runs[0]
    (tmp_path / "report").mkdir()
    cache = ReportCache(None, tmp_path / "report")
    energies = precompute.report_energies(runs, cache)["r"]
    aperture, temperature = aperture_of(run.config, run.meta), logit_temperature_of(run.config)
    assert [e.epoch for e in energies] == [0, 2]
    for e in energies:
        _same(e, epoch_energy(run.reader.features(e.epoch), e.epoch, aperture, temperature))
    assert list((tmp_path / "report").rglob("*.npz"))  # written to the cache
    (tmp_path / "new").mkdir()

    def recomputed(*args):
        raise AssertionError("a cached energy was computed again")

    monkeypatch.setattr(precompute, "epoch_energy", recomputed)
    again = precompute.report_energies(runs, ReportCache(tmp_path / "report", tmp_path / "new"))
    for a, b in zip(again["r"], energies, strict=True):
        _same(a, b)


def test_report_numbers_give_one_overlap_per_run_and_none_without_features(tmp_path):
    with_features = make_run(tmp_path / "a", name="a", n_steps=5, n_per_class=8)
    without = make_run(tmp_path / "b", name="b", n_steps=5, n_per_class=8, feature_epochs=())
    runs = load_runs([with_features, without])
    energies, overlaps = precompute.report_numbers(
        runs, None, max_points=20, backend="auto", seed=0, workers=1
    )
    assert [len(energies[name]) for name in ("a", "b")] == [2, 0]
    assert overlaps[1] is None and overlaps[0].epoch == 2
    assert 0 < overlaps[0].n_shown <= 20
