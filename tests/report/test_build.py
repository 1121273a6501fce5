"""build_report end to end: files, images, escaping, banners, tables, atomic replacement."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from PIL import Image

from entangle.errors import EntangleValueError
from entangle.report import build_report
from entangle.report.output import MARKER
from tests.report.fake_runs import XSS, make_run

FIGURES = (
    "conflict_curves",
    "training_curves",
    "energy_ratio",
    "free_energy",
    "conceptor_spectrum",
    "step_energy",
    "eep_weight",
    "tsne_overlap",
    "comparison_curves",
)


def test_every_figure_is_a_150_dpi_png_and_embedded(built_report):
    out = built_report.parent
    page = built_report.read_text(encoding="utf-8")
    for name in FIGURES:
        path = out / f"{name}.png"
        with Image.open(path) as img:
            img.load()  # decodes the whole image, not just the header
            assert img.format == "PNG" and img.width > 300 and img.height > 200
            assert np.allclose(img.info["dpi"], (150, 150), atol=0.5)
        assert f'id="fig-{name}"' in page
    assert page.count('src="data:image/png;base64,') == len(FIGURES)


def test_page_is_self_contained(built_report):
    page = built_report.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<script" not in page.lower()


def test_user_strings_are_escaped_never_markup(built_report):
    page = built_report.read_text(encoding="utf-8")
    assert XSS not in page
    assert html.escape(XSS) in page  # run name (title, tables) and class names (config)
    assert "ship &amp; boat" in page


def test_incomplete_run_gets_a_warning_banner(built_report):
    page = built_report.read_text(encoding="utf-8")
    banners = re.findall(r'<div class="banner" role="alert">(.*?)</div>', page, flags=re.S)
    assert len(banners) == 1  # the finished baseline has none
    assert html.escape(f"eagc {XSS}") in banners[0]
    assert "torn" in banners[0] and "no DONE file" in banners[0]


def test_summary_table_and_delta_table_hold_the_runs_numbers(built_report):
    page = built_report.read_text(encoding="utf-8")
    # best All accuracy of the fake baseline: (0.70 + 0.46) / 2 at epoch 2
    assert re.search(r"Accuracy All \(best epoch\)</th><td class=\"num\">0\.5800</td>", page)
    assert "Mean cos(g_S, g_U), EAGC" in page
    assert 'id="comparison"' in page and "(reference)" in page
    # the EAGC run's new-class accuracy is 0.05 higher at every epoch
    assert re.search(
        r"Accuracy New \(last epoch\)</td><td class=\"num\">0\.4600</td>"
        r"<td class=\"num\">\+0\.0500</td>",
        page,
    )


def test_summary_and_run_details_say_where_each_run_started(built_report):
    page = built_report.read_text(encoding="utf-8")
    assert re.search(
        r"Initial backbone weights</th><td class=\"num\">pretrained</td>"
        r"<td class=\"num\">reference model \(warm start\)</td>",
        page,
    )
    assert page.count("<tr><th>Initial backbone weights</th><td>") == 2  # run details


def test_report_marks_subsampled_tsne(built_report):
    page = built_report.read_text(encoding="utf-8")
    assert "150 of 180" in page


def test_single_run_report_has_no_comparison(tmp_path):
    run = make_run(tmp_path / "run", name="solo", n_steps=40, feature_epochs=(1,), grouped=False)
    index = build_report([run], tmp_path / "out", pdf=True)
    page = index.read_text(encoding="utf-8")
    assert 'id="comparison"' not in page and 'class="banner"' not in page
    assert (tmp_path / "out" / "tsne_overlap.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "out" / "eep_weight.png").exists()  # EAGC off: no EEP weights


def test_replaces_an_old_report_and_refuses_other_folders(tmp_path):
    run = make_run(tmp_path / "run", name="first", n_steps=20, feature_epochs=(0,))
    out = tmp_path / "out"
    build_report([run], out)
    (out / "stale.png").write_bytes(b"old")
    build_report([run], out, names=["second"])
    assert not (out / "stale.png").exists() and (out / MARKER).is_file()
    assert "second" in (out / "index.html").read_text(encoding="utf-8")

    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(EntangleValueError, match="not an entangle report"):
        build_report([run], other)
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos", "run"]


def test_a_failed_render_keeps_the_old_report(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", name="good", n_steps=20, feature_epochs=(0,))
    out = tmp_path / "out"
    build_report([run], out)
    before = (out / "index.html").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("entangle.report.html.render_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report([run], out, names=["bad"])
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no temp folder left


def test_bad_arguments_are_value_errors(tmp_path):
    run = make_run(tmp_path / "run", name="r", n_steps=5, feature_epochs=())
    with pytest.raises(EntangleValueError, match="one name per run"):
        build_report([run], tmp_path / "o", names=["a", "b"])
    with pytest.raises(EntangleValueError, match="does not exist"):
        build_report([tmp_path / "missing"], tmp_path / "o")
    with pytest.raises(EntangleValueError, match="tsne_backend"):
        build_report([run], tmp_path / "o", tsne_backend="umap")
    with pytest.raises(EntangleValueError, match="no runs"):
        build_report([], tmp_path / "o")


def test_run_without_features_still_renders(tmp_path):
    run = make_run(tmp_path / "run", name="nofeat", n_steps=10, feature_epochs=())
    page = build_report([run], tmp_path / "out").read_text(encoding="utf-8")
    assert "no saved features" in page or "tsne_overlap" in page


def test_page_names_the_accuracy_protocol_and_marks_oracle_numbers(built_report):
    page = built_report.read_text(encoding="utf-8")
    # the fake runs' records predate the acc_protocol field: they are v2
    assert re.search(r"under the protocol\s*<code>v2</code>", page)
    assert page.count("Oracle:") >= 3  # summary, accuracy/SOC curves, t-SNE overlap


def test_accuracy_protocol_of_records():
    from entangle.runs.records import accuracy_protocol

    assert accuracy_protocol([{"epoch": 0, "acc_all": 0.5}]) == "v2"
    mixed = [{"acc_all": 0.5, "acc_protocol": "v1"}, {"acc_all": 0.6, "acc_protocol": "v2b"}]
    assert accuracy_protocol(mixed) == "v1, v2b"
    assert accuracy_protocol([{"epoch": 0, "soc": 0.2}]) == "-"
