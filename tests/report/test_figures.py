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


def _boxes_of(fig):
    """Each axes' box and the tight box of everything drawn with it, in display pixels."""
    renderer = fig.canvas.get_renderer()
    return [(ax.get_window_extent(renderer), ax.get_tightbbox(renderer)) for ax in fig.axes]


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2)])
def test_grid_layout_keeps_every_text_inside_the_figure_and_off_other_panels(shape):
    """Titles, rotated tick labels, axis labels and legends outside the axes (right, below)."""
    from entangle.report.figures import new_figure, style, suptitle

    with style():
        fig, axes = new_figure(*shape, panel=(3.0, 2.4))
        for i, ax in enumerate(axes.flat):
            ax.plot([0, 1, 2], [0, 10**i, 2], label=f"series {i}")
            ax.set_title(f"panel {i} with a fairly long title")
            ax.set_xlabel("training step")
            ax.set_ylabel("ratio (log scale)")
            if i % 2:
                names = ["baseline, lambda=0.7", "eagc", "aga, w=2.8"]
                ax.set_xticks([0, 1, 2], names, rotation=35, ha="right")
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            else:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
        suptitle(fig, "A figure title over every panel")
        fig.canvas.draw()
    whole = fig.bbox
    boxes = _boxes_of(fig)
    for _, tight in boxes:
        assert whole.x0 - 1 <= tight.x0 and tight.x1 <= whole.x1 + 1
        assert whole.y0 - 1 <= tight.y0 and tight.y1 <= whole.y1 + 1
    for i, (_, tight) in enumerate(boxes):
        for j, (panel, _) in enumerate(boxes):
            if i != j:  # nothing of one panel reaches into another panel's axes
                assert not tight.overlaps(panel), (i, j)
    sup = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    assert all(not sup.overlaps(tight) for _, tight in boxes)


def test_sampled_palette_maps_each_pixel_to_its_nearest_colour_as_well_as_full_median_cut(
    tmp_path,
):
    """On a rendered report figure: nearest palette colour per pixel, error <= PIL's own."""
    import io

    import numpy as np
    from PIL import Image

    from entangle.report.figures import PNG_COLORS, _palette

    fig = eep_weight_figure(load_runs([make_run(tmp_path / "e", name="eagc", eagc=True)]))
    fig.set_dpi(150)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    with Image.open(io.BytesIO(_palette(rgb, PNG_COLORS, (150, 150)))) as img:
        table = np.asarray(img.getpalette()[: 3 * PNG_COLORS], dtype=np.int64).reshape(-1, 3)
        index = np.asarray(img)
    pixels = rgb.reshape(-1, 3).astype(np.int64)
    distances = ((pixels[:, None, :] - table[None, :, :]) ** 2).sum(axis=2)
    chosen = distances[np.arange(pixels.shape[0]), index.reshape(-1)]
    assert np.array_equal(chosen, distances.min(axis=1))  # the nearest of the palette
    white = (pixels == 255).all(axis=1)
    assert (table[index.reshape(-1)[white]] == 255).all()  # the background stays white
    median_cut, no_dither = Image.Quantize.MEDIANCUT, Image.Dither.NONE
    full = Image.fromarray(rgb).quantize(PNG_COLORS, median_cut, dither=no_dither)
    full_rgb = np.asarray(full.convert("RGB")).reshape(-1, 3).astype(np.int64)
    full_error = np.sqrt(((full_rgb - pixels) ** 2).sum(axis=1)).mean()
    assert np.sqrt(chosen).mean() <= 1.05 * full_error
