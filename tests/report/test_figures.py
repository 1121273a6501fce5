"""Figure plumbing: titles of one-panel figures fit inside the figure."""

from __future__ import annotations

import pytest

from entangle.report.load import load_runs
from entangle.report.plot_energy import eep_weight_figure
from tests.report.fake_runs import make_run


def _title_fits(fig) -> bool:
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    width = fig.get_figwidth() * fig.dpi
    return box.x0 >= 0 and box.x1 <= width


def test_single_panel_title_is_not_clipped(tmp_path):
    runs = load_runs([make_run(tmp_path / "e", name="eagc", eagc=True)])
    fig = eep_weight_figure(runs)
    # before: "rgy-aware elastic projection: distribution of per-row weig" on one panel
    assert _title_fits(fig)
    assert "distribution of per-row" in fig._suptitle.get_text()


@pytest.mark.parametrize("n_chars", [30, 200])
def test_suptitle_wraps_to_the_figure_width(n_chars):
    from entangle.report.figures import new_figure, suptitle

    fig, _ = new_figure(1, 1)
    suptitle(fig, " ".join(["word"] * (n_chars // 5)))
    assert _title_fits(fig)


def test_seed_band_is_the_seed_mean_and_range_on_the_steps_all_seeds_have():
    import numpy as np

    from entangle.report.plot_curves import seed_band

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
    from entangle.report.plot_curves import conflict_figure
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
    from entangle.report.plot_curves import training_figure

    training = training_figure(load_runs(paths))
    assert len(training.axes) == 6  # 3 rows x 2 settings
    assert "eagc-s{0,1} (2 seeds): clustering accuracy" in [a.get_title() for a in training.axes]
    # one run per setting: the per-run figure as before
    single = conflict_figure(load_runs(paths[::2]))
    assert (
        len(single.axes) == 4
        and single.axes[0].get_title() == "base-s0 [last_block]: cosine conflict"
    )


@pytest.mark.parametrize("label", ["$\\frac{", "a\\$b", "$x$", "\\", "a$b$c", "$\\alpha$ ^{ _"])
def test_user_text_is_shown_as_typed_never_as_mathtext(label):
    """``$\\frac{`` showed with a doubled backslash (issue 19); a draw must not raise either."""
    from entangle.report.figures import new_figure, text

    fig, axes = new_figure(1, 1)
    title = axes[0, 0].set_title(text(label))
    fig.canvas.draw()
    assert title._preprocess_math(title.get_text()) == (label, False)
