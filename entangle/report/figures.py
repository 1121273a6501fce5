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
    with matplotlib.rc_context(rc):
        yield


def new_figure(nrows: int, ncols: int, *, panel=(4.6, 3.2), **subplot_kw):
    """A ``Figure`` with an Agg canvas and a 2-D array of axes ``[nrows, ncols]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


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
    from PIL import Image  # matplotlib's own dependency

    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    png = _palette(Image.fromarray(rgba).convert("RGB"), PNG_COLORS, (DPI, DPI))
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
        return _palette(img.convert("RGB"), colors, dpi)


def _palette(rgb, colors: int, dpi) -> bytes:
    """A PIL RGB image as a ``colors``-colour palette PNG (no dithering)."""
    from PIL import Image

    small = rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
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
