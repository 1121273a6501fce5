"""entangle.report.plot_curves: the seed band and the conflict and training figures per setting."""

from __future__ import annotations

import numpy as np

from entangle.report.load import load_runs
from entangle.report.plot_curves import (
    comparison_figure,
    conflict_figure,
    curve,
    seed_band,
    training_figure,
    x_label,
)
from tests.report.fake_runs import make_run


def test_seed_band_is_the_seed_mean_and_range_on_the_steps_all_seeds_have():
    import numpy as np

    x = np.arange(5.0)
    a = (x, np.array([0.0, 1.0, np.nan, 3.0, 4.0]))  # step 2 missing in one seed
    b = (x[::-1], np.array([8.0, 6.0, 4.0, 2.0, 0.0]))  # unsorted steps, same values by step
    common, mean, low, high = seed_band([a, b])
    np.testing.assert_array_equal(common, [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(mean, [0.0, 1.5, 4.5, 6.0])
    np.testing.assert_allclose(low, [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(high, [0.0, 2.0, 6.0, 8.0])
    assert (
        seed_band([(np.array([0.0]), np.array([1.0])), (np.array([1.0]), np.array([2.0]))]) is None
    )


def test_seeded_settings_get_one_conflict_column_each_with_bands(tmp_path):
    """Six runs of two settings were six tiny columns (issue 22)."""
    from matplotlib.collections import PolyCollection

    from entangle.report.load import load_runs
    from tests.report.fake_runs import make_run

    paths = [
        make_run(tmp_path / f"{v}-s{s}", name=f"{v}-s{s}", eagc=v == "eagc", seed=s, n_steps=40)
        for v in ("base", "eagc")
        for s in (0, 1)
    ]
    fig = conflict_figure(load_runs(paths))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 4  # 2 rows x 2 settings, not 2 x 4 runs
    assert "base-s{0,1} (2 seeds) [last_block]: cosine conflict" in titles
    assert "eagc-s{0,1} (2 seeds) [last_block]: GDC" in titles
    eagc_cos = fig.axes[titles.index("eagc-s{0,1} (2 seeds) [last_block]: cosine conflict")]
    bands = [c for c in eagc_cos.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # raw and EAGC-corrected, each with its seed band

    training = training_figure(load_runs(paths))
    assert len(training.axes) == 6  # 3 rows x 2 settings
    assert "eagc-s{0,1} (2 seeds): clustering accuracy" in [a.get_title() for a in training.axes]
    # one run per setting: the per-run figure as before
    single = conflict_figure(load_runs(paths[::2]))
    assert (
        len(single.axes) == 4
        and single.axes[0].get_title() == "base-s0 [last_block]: cosine conflict"
    )


def test_a_checkpoints_batches_are_drawn_as_is_and_training_smoothed():
    from types import SimpleNamespace

    from entangle.report.figures import smooth

    frozen, training = SimpleNamespace(is_analysis=True), SimpleNamespace(is_analysis=False)
    y = np.array([0.0, 4.0, 0.0, 4.0, 0.0, 4.0])
    assert x_label(frozen) == "gradient batch (frozen checkpoint)"
    assert x_label(training) == "training step"
    np.testing.assert_array_equal(curve(frozen, y), y)
    np.testing.assert_array_equal(curve(training, y), smooth(y))


def test_comparison_figure_overlays_settings_per_run(tmp_path):
    paths = [make_run(tmp_path / v, name=v, eagc=v == "eagc", n_steps=30) for v in ("base", "eagc")]
    fig = comparison_figure(load_runs(paths))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Gradient cosine per run", "GDC per run", "All accuracy per run"]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "base, raw" in labels and "eagc, EAGC" in labels
    assert "solid: raw, dashed: EAGC" in fig._suptitle.get_text()
