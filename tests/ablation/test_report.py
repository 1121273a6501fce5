"""The grid's report page: rendered by the report's jinja2 template, every user string escaped."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

import entangle.ablation.report as ablation_report_module
from entangle.ablation.report import ablation_report
from entangle.ablation.results import aggregate
from entangle.ablation.spec import parse_grid

HOSTILE = "eagc <b>&'\""


def _row(variant, seed, acc, status="done", **extra):
    return {
        "cell": f"variant={variant}__seed={seed}",
        "status": status,
        "variant": variant,
        "seed": seed,
        "acc_all": acc,
        "acc_old": acc,
        "acc_new": acc,
        "gdc": 0.1,
        "gdc_raw": 0.2,
        "soc": 0.5,
        **extra,
    }


@pytest.fixture
def page(monkeypatch, tmp_path):
    """A page of two settings, one failed cell, a verdict; figures stubbed (no plotting)."""
    monkeypatch.setattr(ablation_report_module, "bars_figure", lambda groups: "bars")
    monkeypatch.setattr(ablation_report_module, "steps_figure", lambda curves: "steps")
    monkeypatch.setattr(ablation_report_module, "_png", lambda fig: f"PNG-{fig}")
    verdict = SimpleNamespace(
        card=["card <1> & 'x'"], lines=["second line"], probeset=None,
        glance={"header": ["Setting"], "rows": [["a"], ["b"]]},
    )  # fmt: skip
    monkeypatch.setattr(ablation_report_module, "grid_verdict", lambda groups, out: verdict)
    rows = [
        _row("baseline", 0, 0.5),
        _row("baseline", 1, 0.6),
        _row(HOSTILE, 0, 0.7),
        _row(HOSTILE, 1, math.nan, status="failed", error="boom <x>"),
    ]
    spec = parse_grid({"base": {"epochs": 1}, "grid": {"seed": [0]}}, source="<grid & co>")
    groups = aggregate(rows, ["variant"])
    return ablation_report(spec, [], rows, groups, ["variant"], tmp_path / "g<1>")


def test_every_user_string_is_escaped(page):
    assert "<b>" not in page and "&lt;b&gt;&amp;" in page
    assert "&lt;grid &amp; co&gt;" in page and "boom &lt;x&gt;" in page
    assert "card &lt;1&gt; &amp;" in page and "g&lt;1&gt;" in page
    assert page.startswith("<!doctype html>") and page.endswith("</body></html>")


def test_the_page_keeps_its_order_verdict_table_figures_failures_settings(page):
    order = [
        "<h2>Verdict</h2>",
        "<table><tr><th>variant</th>",
        "<h2>Accuracy, GDC and SOC per setting</h2>",
        "src='data:image/png;base64,PNG-bars'",
        "<h2>Per-step curves of each variant</h2>",
        "<h2>Cells not finished</h2>",
        "<h2>Base settings</h2><table><tr><td>epochs</td><td>1</td></tr></table>",
        "<h2>Cells</h2>",
    ]
    assert [page.index(s) for s in order] == sorted(page.index(s) for s in order)
    assert "<li class='failed'><code>variant=eagc" in page and "failed — boom" in page
    # value cells right-aligned: the settings column is not
    assert "<tr><td>baseline</td><td class=n>2</td>" in page
    assert page.count("<tr><td><code>variant=") == 4  # one row per cell
