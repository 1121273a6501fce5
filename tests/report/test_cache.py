"""The report cache: a second report of the same runs equals the first and recomputes nothing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from entangle.report import build_report
from entangle.report import tsne as tsne_module
from entangle.report.cache import ReportCache, cache_key
from entangle.report.maps import MapJob, tsne_maps
from tests.report.fake_runs import make_run

GENERATED = re.compile(r"Generated [^<]* by entangle")


def _html(out):
    return GENERATED.sub("Generated - by entangle", (out / "index.html").read_text())


def test_a_cached_report_equals_the_cold_one(tmp_path, count_maps):
    runs = [
        make_run(tmp_path / "a", name="baseline", seed=1, n_steps=40),
        make_run(tmp_path / "b", name="eagc", eagc=True, seed=2, n_steps=40),
    ]
    out = tmp_path / "report"
    build_report(runs, out, workers=1)
    cold_html = _html(out)
    cold_pngs = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(count_maps) == 2 and (out / "cache").is_dir()

    build_report(runs, out, workers=1)
    assert len(count_maps) == 2  # no map recomputed
    assert _html(out) == cold_html
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == cold_pngs


def test_a_changed_features_file_is_recomputed(tmp_path, count_maps):
    runs = [make_run(tmp_path / "a", name="a", seed=1, n_steps=20, feature_epochs=(2,))]
    out = tmp_path / "report"
    build_report(runs, out, workers=1)
    first = _html(out)
    # a later training run rewrote the features: same file name, other content
    features = next((runs[0] / "features").glob("*.npz"))
    with np.load(features) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["features"] = arrays["features"][::-1].copy()
    np.savez(features, **arrays)
    build_report(runs, out, workers=1)
    assert len(count_maps) == 2
    assert _html(out) != first


def test_unreadable_cache_entries_are_recomputed_not_trusted(tmp_path, count_maps):
    runs = [make_run(tmp_path / "a", name="a", seed=1, n_steps=20, feature_epochs=(2,))]
    out = tmp_path / "report"
    build_report(runs, out, workers=1)
    first = _html(out)
    for entry in (out / "cache").glob("*.npz"):
        entry.write_bytes(b"not an npz")
    build_report(runs, out, workers=1)
    assert len(count_maps) == 2
    assert _html(out) == first


def test_worker_processes_draw_the_same_maps_as_this_process(tmp_path):
    rng = np.random.default_rng(0)
    jobs = [
        MapJob(
            rng.normal(size=(60, 8)) + 4 * (np.arange(60) % 2)[:, None],
            np.arange(60) % 2,
            seed,
            60,
            tsne_module.resolve_backend("auto"),
        )
        for seed in (0, 1)
    ]
    here = tsne_maps(jobs, workers=1)
    done = []
    apart = tsne_maps(jobs, workers=2, on_done=done.append)
    for (a, ka), (b, kb) in zip(here, apart, strict=True):
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    assert done == [1, 2]


def test_cache_keys_change_with_every_setting():
    base = {"seed": 0, "max_points": 100}
    keys = {
        cache_key("tsne", "d1", base),
        cache_key("tsne", "d2", base),
        cache_key("tsne", "d1", {**base, "seed": 1}),
        cache_key("energy", "d1", base),
    }
    assert len(keys) == 4


def test_a_symlinked_entry_is_not_read(tmp_path):
    previous, target = tmp_path / "old", tmp_path / "new"
    (previous / "cache").mkdir(parents=True)
    secret = tmp_path / "secret.npz"
    np.savez(secret, coords=np.zeros((2, 2)), kept=np.arange(2))
    (previous / "cache" / "tsne-x.npz").symlink_to(secret)
    target.mkdir()
    assert ReportCache(previous, target).get("tsne-x") is None


def test_entries_are_not_written_through_a_symlinked_cache_folder(tmp_path):
    from entangle.runs.io import SymlinkRefused

    victim = tmp_path / "victim"
    victim.mkdir()
    target = tmp_path / "new"
    target.mkdir()
    (target / "cache").symlink_to(victim)
    with pytest.raises(SymlinkRefused):
        ReportCache(None, target).put("tsne-x", {"coords": np.zeros((2, 2))})
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("damage", ["bomb", "not-a-zip"])
def test_a_bomb_or_a_damaged_entry_is_a_miss(tmp_path, damage):
    """A previous folder's entry declaring 4 GiB in a few KB is refused from its central
    directory (it was read and trusted), and a file that is no zip at all is recomputed."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
    from bombs import declare_size

    previous, target = tmp_path / "old", tmp_path / "new"
    (previous / "cache").mkdir(parents=True)
    target.mkdir()
    entry = previous / "cache" / "tsne-x.npz"
    np.savez(entry, coords=np.zeros((2, 2)), kept=np.arange(2))
    if damage == "bomb":
        declare_size(entry, "coords.npy", 4 << 30)
    else:
        entry.write_bytes(b"not a zip file at all")
    cache = ReportCache(previous, target)
    assert cache.get("tsne-x") is None and cache.misses == 1


def test_a_figure_drawn_by_other_code_is_drawn_again(tmp_path, monkeypatch):
    """The key held the version string only: a figure's code changed in a checkout (still
    0.1.0) and the report kept showing the old drawing from its cache."""
    from entangle.report import cache as cache_module

    cache = ReportCache(None, tmp_path)
    drawn = []

    def draw():
        drawn.append(1)
        return b"png", None

    for _ in range(2):  # the same code: the second report reads the cache
        cache_module.cached_figure(cache, "digest", "conflict_curves", False, draw)
    assert len(drawn) == 1
    assert len(cache_module._drawing_code()) == 64  # a SHA-256 of the drawing code
    monkeypatch.setattr(cache_module, "_drawing_code", lambda: "other code")
    cache_module.cached_figure(cache, "digest", "conflict_curves", False, draw)
    assert len(drawn) == 2
