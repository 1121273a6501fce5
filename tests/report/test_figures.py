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
