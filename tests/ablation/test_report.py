"""The grid's report page: rendered by the report's jinja2 template, every user string escaped."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

import entangle.ablation.report as ablation_report_module
from entangle.ablation.report import ablation_report
from entangle.ablation.results import aggregate
from entangle.ablation.runner import run_grid
from entangle.ablation.spec import parse_grid
from tests.ablation.tiny import TINY

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


def test_report_has_table_figures_and_escaped_names(tmp_path):
    spec = parse_grid(
        {
            "base": TINY,
            "grid": [
                {"variant": ["baseline", "eagc"], "seed": [0, 1]},
                {"variant": ["eagc"], "aga_weight": [1.4], "seed": [0, 1]},
            ],
        },
        source="<grid & co>",
    )
    run = run_grid(spec, tmp_path / "g")
    page = run.files["report"].read_text(encoding="utf-8")
    assert "&lt;grid &amp; co&gt;" in page and "<grid & co>" not in page
    assert page.count("data:image/png;base64,") == 3  # bars, aga_weight sensitivity, steps
    assert "Sensitivity to aga_weight" in page
    # the verdict opens the page and summarises seeds of one setting across seeds
    assert page.index("<h2>Verdict</h2>") < page.index("<table>")
    assert "n = 2 vs 2 seeds" in page  # seed means compared, n on each side
    assert "variant=eagc__aga_weight=1.4__seed=1" in page
    # verdict.json beside report.html: the run report's schema plus the grid's settings
    data = json.loads(run.files["verdict"].read_text(encoding="utf-8"))
    assert run.files["verdict"] == run.files["report"].with_name("verdict.json")
    eagc, base = "variant=eagc__aga_weight=0.7__seed", "variant=baseline__aga_weight=0.7__seed"
    assert data["headline"] == {
        "a": "variant=eagc, aga_weight=0.7 (seeds 0,1)",
        "b": "variant=baseline, aga_weight=0.7 (seeds 0,1)",
    }
    acc = next(c for c in data["comparisons"]
               if (c["a"], c["metric"]) == (data["headline"]["a"], "acc_all_last"))  # fmt: skip
    cells = {r["name"]: r for r in data["runs"]}
    want = np.mean([cells[f"{eagc}={k}"]["acc_all_last"] - cells[f"{base}={k}"]["acc_all_last"]
                    for k in (0, 1)])  # fmt: skip
    assert acc["difference"] == pytest.approx(want) and acc["method"] == "paired t"
    assert (acc["n_a"], acc["n_b"]) == (2, 2) and len(data["card"]) <= 8
    grid = {s["setting"]: s for s in data["grid"]["settings"]}
    assert grid["variant=eagc, aga_weight=1.4 (seeds 0,1)"]["values"] == {
        "variant": "eagc", "aga_weight": 1.4}  # fmt: skip
    assert sorted(grid["variant=baseline, aga_weight=0.7 (seeds 0,1)"]["cells"]) == [
        base + "=0",
        base + "=1",
    ]
    summary = run.files["summary"].read_text(encoding="utf-8")
    assert summary.count("\n| ") == 4  # header + baseline, eagc 0.7, eagc 1.4
