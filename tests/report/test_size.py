"""The report's size budget: the demo report (six runs) must stay under 3 MB (issue 22).

Held on the shared two-run fake report: before palette PNGs its figures were 150-470 kB each
(the six-run demo page 8.4 MB); now each is well under 100 kB.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from entangle.report.figures import DPI, PNG_COLORS, palette_png

PAGE_BUDGET = 1_000_000  # bytes of index.html (PNGs inline as base64) for two runs
FIGURE_BUDGET = 100_000  # bytes per PNG


def test_two_run_report_stays_in_its_byte_budget(built_report):
    pngs = sorted(built_report.parent.glob("*.png"))
    assert len(pngs) >= 8
    sizes = {p.name: p.stat().st_size for p in pngs}
    assert max(sizes.values()) <= FIGURE_BUDGET, sizes
    assert built_report.stat().st_size <= PAGE_BUDGET


def test_palette_png_keeps_the_pixels_of_a_plot_and_its_dpi():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for k in range(10):
        ax.plot(np.arange(50), np.sin(np.arange(50) / 5 + k), lw=1.5)
    ax.set_title("ten lines")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    small = palette_png(buf.getvalue())
    with Image.open(io.BytesIO(buf.getvalue())) as a, Image.open(io.BytesIO(small)) as b:
        rgb_a = np.asarray(a.convert("RGB"), dtype=float)
        rgb_b = np.asarray(b.convert("RGB"), dtype=float)
        assert b.mode == "P" and len(b.getcolors()) <= PNG_COLORS
        assert np.allclose(b.info["dpi"], (DPI, DPI), atol=0.5)
    assert len(small) < len(buf.getvalue()) / 2
    # the picture is the same: mean colour error under 2 of 255, almost no pixel off by > 40
    err = np.abs(rgb_a - rgb_b).max(axis=2)
    assert err.mean() < 2.0 and (err > 40).mean() < 0.005
