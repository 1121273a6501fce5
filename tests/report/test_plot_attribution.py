"""Attribution figures: top samples summed over steps; a grid only where images exist."""

from __future__ import annotations

import pytest

from entangle.report import plot_attribution
from entangle.report.load import load_runs
from entangle.runs.directory import RunWriter


def _run(path, data="synthetic"):
    with RunWriter(path, config={"data": data, "seed": 0}, seed=0) as w:
        for step, (idx, share) in enumerate([([5, 7], [-0.3, -0.1]), ([7, 2], [-0.25, 0.05])]):
            w.write_step({
                "step": step,
                "attribution": {"unsup_rows": {
                    "class": [0.1, -0.2], "top_index": idx, "top_share": share,
                    "top_labeled": [False, True],
                }},
            })  # fmt: skip
        w.finish({})
    return load_runs([path])


def test_top_samples_sum_their_shares_over_steps(tmp_path):
    (run,) = _run(tmp_path / "r")
    top = plot_attribution.top_samples(run)
    assert [t[0] for t in top] == [7, 5, 2]
    assert top[0][1] == pytest.approx(-0.35) and top[0][2] == 2


def test_figures(tmp_path):
    runs = _run(tmp_path / "r")
    assert plot_attribution.has_attribution(runs)
    assert plot_attribution.class_attribution_figure(runs) is not None
    assert plot_attribution.conflicting_samples_figure(runs) is None  # synthetic: no images
    digits = _run(tmp_path / "d", data="digits")
    fig = plot_attribution.conflicting_samples_figure(digits)
    # one axes per run holds every sample's image and caption (not a panel per image)
    (ax,) = fig.axes
    top = plot_attribution.top_samples(digits[0])
    assert len(ax.images) == len(top) == 3
    captions = [t.get_text() for t in ax.texts]
    assert [c.split()[0] for c in captions] == [f"#{t[0]}" for t in top]


def _ten_class_run(path):
    """Ten classes; class c's share at step t is (c - 6) / 100 + t / 1000 (class 0 pulls
    hardest), one unlabeled row each."""
    with RunWriter(path, config={"data": "synthetic", "class_names": list("abcdefghij")}) as w:
        for step in range(6):
            share = [(c - 6) / 100 + step / 1000 for c in range(10)]
            w.write_step(
                {
                    "step": step,
                    "attribution": {
                        "unsup_rows": {"class": share, "class_rows": [1.0] * 10},
                    },
                    "attribution_eagc": {
                        "unsup_rows": {"class": [v / 2 for v in share], "class_rows": [1.0] * 10},
                    },
                }
            )
        w.finish({})
    return load_runs([path])


def test_ten_classes_show_the_top_five_and_the_rest_summed(tmp_path):
    """Ten class lines were unreadable; the title and y label were clipped (issue 22)."""
    import numpy as np

    (run,) = _ten_class_run(tmp_path / "r")
    shown, rest = plot_attribution.top_classes(run)
    assert shown == [0, 1, 2, 3, 4] and sorted(rest) == [5, 6, 7, 8, 9]
    fig = plot_attribution.class_attribution_figure([run])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "class a",
        "class b",
        "class c",
        "class d",
        "class e",
        "other 5 classes (sum)",
    ]
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(solid) == 6 and len(dashed) == 6  # raw and EAGC for each shown line
    # the grey line is the sum of the other classes' shares (shares add up)
    want = np.array([sum((c - 6) / 100 + t / 1000 for c in range(5, 10)) for t in range(6)])
    np.testing.assert_allclose(solid[-1].get_ydata(), want, atol=1e-12)
    # nothing drawn outside the figure: title, y label and legend inside its bounds
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    items = [fig._suptitle, ax.yaxis.label, ax.title, ax.get_legend()]
    for item in items:
        ext = item.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, item
        assert ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1, item


def _captions(index) -> dict[str, str]:
    """``{figure id: caption text}`` of a built report page (without title and file name)."""
    import html
    import re

    page = index.read_text(encoding="utf-8")
    found = re.findall(
        r'id="fig-([a-z_]+)".*?<figcaption><strong>.*?</strong>(.*?)\(<code>', page, flags=re.S
    )
    return {name: html.unescape(re.sub(r"<[^>]+>", "", text)).strip() for name, text in found}


def test_subsampled_attribution_says_so_in_the_report_and_a_full_one_is_unchanged(tmp_path):
    """Sums over a subsample of rows are not the cosine's: the captions say which rows, per
    run when the runs differ; a full-set run's caption is the template's word for word."""
    import re

    from entangle.report import build_report
    from entangle.report.build import figure_texts
    from tests.support.toy import attributed_toy_run

    full = attributed_toy_run(tmp_path / "full", steps=2)
    sub = attributed_toy_run(tmp_path / "sub", steps=2, rows=5)
    words = "Attribution over a subsample: 5 of 16 rows per attributed step (seeded by step)."
    one = _captions(build_report([sub], tmp_path / "report-sub"))
    verdict = (tmp_path / "report-sub" / "index.html").read_text(encoding="utf-8")
    # the verdict's ranking line says which rows its shares cover
    assert re.search(r"pull hardest against the supervised direction[^<]*; attribution over a "
                     r"subsample: 5 of 16 rows per attributed step", verdict), verdict  # fmt: skip
    for name in ("class_attribution", "conflicting_samples"):
        if name in one:  # the samples grid needs image data: toy rows have none
            assert words in one[name], one[name]
    assert "class_attribution" in one and "covers those rows only" in one["class_attribution"]

    plain = _captions(build_report([full], tmp_path / "report-full"))
    template = " ".join(figure_texts()["class_attribution"]["caption"].split())
    assert " ".join(plain["class_attribution"].split()) == template
    assert "subsample" not in plain["class_attribution"]

    both = _captions(build_report([sub, full], tmp_path / "report-both"))["class_attribution"]
    assert re.search(r"subsample of rows per attributed step \(seeded by step\) "
                     r"\(sub: 5 of 16; full: every row\)", both), both  # fmt: skip
