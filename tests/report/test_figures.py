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


@pytest.mark.parametrize("label", ["$\\frac{", "a\\$b", "$x$", "\\", "a$b$c", "$\\alpha$ ^{ _"])
def test_user_text_is_shown_as_typed_never_as_mathtext(label):
    """``$\\frac{`` showed with a doubled backslash (issue 19); a draw must not raise either."""
    from entangle.report.figures import new_figure, text

    fig, axes = new_figure(1, 1)
    title = axes[0, 0].set_title(text(label))
    fig.canvas.draw()
    assert title._preprocess_math(title.get_text()) == (label, False)
