"""Shared figure plumbing: seaborn style, colour-blind palette, safe text, smoothing, saving.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot,
so reports touch no global figure state and need no display.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DPI = 150
# PNGs are stored as 64-colour palette images: line plots and scatters of <= 10 palette
# colours stay legible (anti-aliased edges keep 64 levels) at about a third of the RGBA
# bytes; the demo report went from 8.4 MB to under 3 MB (tests/report/test_size.py)
PNG_COLORS = 64
PALETTE = "colorblind"
# matplotlib titles get long run names cut to this many characters
MAX_LABEL = 40


@dataclass
class RenderedFigure:
    """A figure written to disk: file stem, title and caption for the HTML, PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def colors(n: int) -> list:
    """``n`` colours from seaborn's colour-blind-safe palette (husl beyond its 10 colours)."""
    import seaborn as sns

    return sns.color_palette(PALETTE if n <= 10 else "husl", n)


@contextlib.contextmanager
def style():
    """Seaborn's whitegrid look for the figures made inside, restored afterwards."""
    import matplotlib
    import seaborn as sns

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}
    rc["axes.prop_cycle"] = matplotlib.cycler(color=colors(10))
    # titles at a fixed height over their axes: matplotlib's automatic title placement
    # measured every axes' ticks again at each draw (no panel has ticks on top)
    rc["axes.titley"] = 1.0
    with matplotlib.rc_context(rc):
        yield


def new_figure(nrows: int, ncols: int, *, panel=(4.6, 3.2), **subplot_kw):
    """A ``Figure`` with an Agg canvas and a 2-D array of axes ``[nrows, ncols]``.

    Laid out by :func:`grid_layout` when drawn (margins measured once from its texts), not by
    matplotlib's constrained layout, whose two passes over every axes' ticks and texts were
    ~60% of a figure's drawing time (docs/performance.md).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout=_grid_engine())
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _grid_engine():
    """A matplotlib ``LayoutEngine`` that runs :func:`grid_layout` before each draw."""
    from matplotlib.layout_engine import LayoutEngine

    class GridLayout(LayoutEngine):
        _adjust_compatible = True
        _colorbar_gridspec = True

        def execute(self, fig):
            grid_layout(fig)

    return GridLayout()


# room in points beside what is measured: between a text and its neighbour, at the edges
_PAD = 4.0
_EDGE = 8.0


def grid_layout(fig) -> None:
    """Place a one-gridspec figure's axes with ``subplots_adjust`` so nothing overlaps.

    Measured once per draw, in points: the suptitle, each panel's title and axis labels,
    the y tick labels (one tick pass on the y axis only), legends placed below their axes;
    the x tick labels' height is taken from their font size. Margins and gaps are the
    largest need over the panels of a row or column edge.
    """
    axes = [ax for ax in fig.axes if ax.get_subplotspec() is not None]
    if not axes:
        return
    renderer = fig._get_renderer()  # the PDF canvas has no get_renderer
    to_pt = 72.0 / fig.dpi
    width, height = fig.get_figwidth() * 72.0, fig.get_figheight() * 72.0
    nrows, ncols = axes[0].get_subplotspec().get_gridspec().get_geometry()
    top_need = [0.0] * nrows  # above each row's axes: titles
    bottom_need = [0.0] * nrows  # below: x tick labels, x label, legends below the axes
    left_need = [0.0] * ncols  # left of each column's axes: y tick labels and label
    right_need = [0.0] * ncols  # right of each column's axes: legends placed beside them
    for ax in axes:
        ss = ax.get_subplotspec()
        row0, row1 = ss.rowspan.start, ss.rowspan.stop - 1
        col0, col1 = ss.colspan.start, ss.colspan.stop - 1
        above, below, left, right = _axes_needs(ax, renderer, to_pt)
        top_need[row0] = max(top_need[row0], above)
        bottom_need[row1] = max(bottom_need[row1], below)
        left_need[col0] = max(left_need[col0], left)
        right_need[col1] = max(right_need[col1], right)
    sup = fig._suptitle
    if sup is not None:  # its top at the figure's top margin, not matplotlib's y=0.98
        sup.set_y(1 - _EDGE / height)
    sup_need = _text_height(sup, renderer, to_pt) + _PAD if sup is not None else 0.0
    top = _EDGE + sup_need + top_need[0]
    bottom = _EDGE + bottom_need[-1]
    left = _EDGE + left_need[0]
    # the last x tick label sticks out by half its width
    right = _EDGE + max(6.0, right_need[-1] + _PAD)
    hgap = max([0.0] + [bottom_need[r] + top_need[r + 1] for r in range(nrows - 1)]) + _PAD
    wgap = max([0.0] + [right_need[c] + left_need[c + 1] for c in range(ncols - 1)]) + 2 * _PAD
    # subplots_adjust's gaps are fractions of the mean axes size
    axes_h = (height - top - bottom - hgap * (nrows - 1)) / nrows
    axes_w = (width - left - right - wgap * (ncols - 1)) / ncols
    if axes_h <= 0 or axes_w <= 0:  # texts bigger than the figure: leave matplotlib's
        return
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wgap / axes_w,
        hspace=hgap / axes_h,
    )


def _text_height(artist, renderer, to_pt: float) -> float:
    """The height of a text artist in points (0 when empty or hidden)."""
    if not artist.get_visible() or not artist.get_text():
        return 0.0
    return artist.get_window_extent(renderer).height * to_pt


def _axes_needs(ax, renderer, to_pt: float) -> tuple[float, float, float, float]:
    """Room in points one axes needs outside its box: ``(above, below, left, right)``."""
    import matplotlib as mpl

    title = max(
        _text_height(t, renderer, to_pt) for t in (ax.title, ax._left_title, ax._right_title)
    )
    above = title + mpl.rcParams["axes.titlepad"] if title else 0.0
    box = ax.get_window_extent(renderer)
    below = 0.0
    overhang = 0.0  # of rotated x tick labels, left of the axes
    if _rotated_xticks(ax):  # long rotated labels (the ablation's settings): measure them
        xbox = ax.xaxis.get_tightbbox(renderer)
        if xbox is not None:
            below = max(0.0, (box.y0 - xbox.y0) * to_pt)
            overhang = max(0.0, (box.x0 - xbox.x0) * to_pt)
    else:
        if ax.xaxis.get_tick_params().get("labelbottom", True) and len(ax.get_xticks()):
            below += _xtick_height()
        label = _text_height(ax.xaxis.label, renderer, to_pt)
        if label:
            below += label + ax.xaxis.labelpad
    right = 0.0
    legend = ax.get_legend()
    if legend is not None:  # anchored outside the axes (below, or beside on the right)
        reach = legend.get_window_extent(renderer)
        below = max(below, (box.y0 - reach.y0) * to_pt)
        right = (reach.x1 - box.x1) * to_pt
    ybox = ax.yaxis.get_tightbbox(renderer)
    left = overhang if ybox is None else max(overhang, (box.x0 - ybox.x0) * to_pt)
    return above, below, left, right


def _xtick_height() -> float:
    """Points below the axes for one line of x tick labels, from the tick rcParams."""
    import matplotlib as mpl

    size = mpl.font_manager.FontProperties(size=mpl.rcParams["xtick.labelsize"])
    # one tick label line, with room for a mathtext exponent
    return (
        mpl.rcParams["xtick.major.size"]
        + mpl.rcParams["xtick.major.pad"]
        + 1.4 * size.get_size_in_points()
    )


def _rotated_xticks(ax) -> bool:
    """Whether any visible x tick label of ``ax`` is turned away from horizontal.

    Only labels set with ``set_xticks(ticks, labels, rotation=...)`` are rotated, and those
    sit on a ``FixedLocator``: other axes are not asked for their ticks, which would run the
    locator and build tick artists before the draw (2.2 s under cProfile, the demo's figures).
    """
    from matplotlib.ticker import FixedLocator

    if not isinstance(ax.xaxis.get_major_locator(), FixedLocator):
        return False
    return any(
        tick.label1.get_visible() and tick.label1.get_rotation() % 180
        for tick in ax.xaxis.get_major_ticks()
    )


def suptitle(fig, title: str) -> None:
    """The figure's title, wrapped to its width so a one-panel figure shows all of it."""
    import textwrap

    # about 9 characters per inch at the title's size (font_scale 0.85, "large")
    width = max(20, int(fig.get_figwidth() * 9))
    fig.suptitle("\n".join(textwrap.wrap(title, width)))


def text(value, limit: int = MAX_LABEL) -> str:
    """A user string safe for matplotlib: ``$`` escaped (no mathtext), long names shortened."""
    s = str(value)
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    # each "$" becomes a backslash-dollar, which matplotlib shows as "$" and never reads as
    # mathtext; other backslashes need no escape outside math mode (doubling them showed the
    # label "$\frac{" with two backslashes, issue 19)
    return s.replace("$", r"\$")


def save(fig, name: str, title: str, caption: str, out_dir: Path, pdf: bool) -> RenderedFigure:
    """Write ``name.png`` (150 dpi) and, with ``pdf``, ``name.pdf`` to ``out_dir``."""
    png, vector = figure_bytes(fig, pdf)
    return write_figure(name, title, caption, out_dir, png, vector)


def figure_bytes(fig, pdf: bool) -> tuple[bytes, bytes | None]:
    """The PNG (150 dpi, :func:`palette_png`) and, with ``pdf``, the PDF of a figure, as bytes.

    The PNG comes from one draw of the Agg canvas, quantised straight from its RGBA buffer:
    ``savefig`` would draw twice (a layout pass, then the picture) and encode a full-colour
    PNG only for :func:`palette_png` to decode it again. Same bytes; measured on the demo's
    training curves 2.59 -> 2.46 s of CPU, conflict curves 1.60 -> 1.37 s.
    """
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    png = _palette(rgba, PNG_COLORS, (DPI, DPI))
    vector = None
    if pdf:
        pdf_buf = io.BytesIO()
        fig.savefig(pdf_buf, format="pdf")
        vector = pdf_buf.getvalue()
    return png, vector


def palette_png(png: bytes, colors: int = PNG_COLORS) -> bytes:
    """``png`` as a palette PNG of ``colors`` colours (no dithering), same dpi."""
    from PIL import Image  # matplotlib's own dependency

    with Image.open(io.BytesIO(png)) as img:
        dpi = img.info.get("dpi", (DPI, DPI))
        return _palette(np.asarray(img.convert("RGB")), colors, dpi)


def _palette(pixels: np.ndarray, colors: int, dpi) -> bytes:
    """An ``[h, w, 3 or 4]`` uint8 RGB(A) image (alpha ignored) as a palette PNG, no dither.

    The median-cut palette of ``colors`` colours is chosen on every third pixel of every third
    row, and each distinct colour of the image goes to its nearest palette colour through one
    lookup table. PIL's median cut over all pixels took 0.1-1.0 s of CPU per demo figure
    (5.5 s over the demo report's 11), this 2.2 s, at a mean colour error no larger
    (tests/report/test_figures.py).
    """
    from PIL import Image

    sample = Image.fromarray(np.ascontiguousarray(pixels[::3, ::3, :3]))
    median_cut, no_dither = Image.Quantize.MEDIANCUT, Image.Dither.NONE
    chosen = sample.quantize(colors=colors, method=median_cut, dither=no_dither)
    table = np.asarray(chosen.getpalette()[: 3 * colors], dtype=np.int32).reshape(-1, 3)
    codes = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8)
    codes |= pixels[..., 2]
    present = np.zeros(1 << 24, dtype=bool)
    present[codes] = True
    seen = np.flatnonzero(present)
    seen_rgb = np.stack([seen >> 16, (seen >> 8) & 255, seen & 255], axis=1)
    lut = np.zeros(1 << 24, dtype=np.uint8)
    for lo in range(0, seen.shape[0], 4096):  # [chunk, colors] distances, bounded memory
        d = ((seen_rgb[lo : lo + 4096, None, :] - table[None, :, :]) ** 2).sum(axis=2)
        lut[seen[lo : lo + 4096]] = d.argmin(axis=1)
    small = Image.frombytes("P", (codes.shape[1], codes.shape[0]), lut[codes].tobytes())
    small.putpalette(table.astype(np.uint8).tobytes())
    out = io.BytesIO()
    # zlib's default level, not optimize=True (level 9): on the two-run test report's ten
    # figures 0.18 s of CPU instead of 0.99 s for 9% more bytes (686 kB vs 630 kB); the
    # median-cut palette stays (FASTOCTREE was 6x faster but turned white into 254 grey)
    small.save(out, format="PNG", dpi=dpi)
    return out.getvalue()


def write_figure(
    name: str, title: str, caption: str, out_dir: Path, png: bytes, pdf: bytes | None
) -> RenderedFigure:
    """Write a figure's bytes as ``name.png`` (and ``name.pdf``) into ``out_dir``."""
    (out_dir / f"{name}.png").write_bytes(png)
    if pdf is not None:
        (out_dir / f"{name}.pdf").write_bytes(pdf)
    return RenderedFigure(name=name, title=title, caption=caption, png=png)


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Centred moving average that skips NaN (a window of only NaN stays NaN).

    Args:
        values: ``[n]``.
        window: points per window; default n / 20 (at least 1), made odd.

    Returns:
        ``[n]``.
    """
    n = values.shape[0]
    if n == 0:
        return values
    if window is None:
        window = max(1, n // 20)
    window = window + 1 - window % 2
    half = window // 2
    ok = np.isfinite(values)
    filled = np.where(ok, values, 0.0)
    csum = np.concatenate([[0.0], np.cumsum(filled)])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def no_data(ax, message: str) -> None:
    """Mark a panel that has nothing to show, saying why."""
    # ticks stay: the axis may be shared with panels that do have data
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.35")
