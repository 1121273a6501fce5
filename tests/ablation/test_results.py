"""A grid's results: rows read from the cells, aggregated over seeds, table, summary, CSV."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from entangle.ablation import aggregate
from entangle.ablation.results import (
    METRICS,
    format_stat,
    results_csv,
    summary_markdown,
    table,
)


def _row(variant, weight, seed, acc, gdc, status="done"):
    return {
        "cell": f"{variant}-{weight}-{seed}",
        "status": status,
        "variant": variant,
        "aga_weight": weight,
        "seed": seed,
        "acc_all": acc,
        "gdc": gdc,
    }


def test_aggregate_groups_seeds_and_matches_numpy():
    rows = [
        _row("eagc", 0.7, 0, 0.60, 0.30),
        _row("baseline", 0.7, 0, 0.50, 0.50),
        _row("eagc", 0.7, 1, 0.64, None),  # NaN GDC: left out of the GDC mean only
        _row("eagc", 1.4, 0, 0.70, 0.20),
        _row("eagc", 0.7, 2, 0.71, 0.26),
        _row("baseline", 0.7, 1, 0.40, 0.70),
        _row("eagc", 1.4, 1, 0.0, 0.0, status="failed"),
    ]
    groups = aggregate(rows, ["variant", "aga_weight"], metrics=("acc_all", "gdc"))
    assert [tuple(g.settings.values()) for g in groups] == [
        ("eagc", 0.7),
        ("baseline", 0.7),
        ("eagc", 1.4),
    ]
    eagc = groups[0]
    assert eagc.seeds == [0, 1, 2]
    acc = np.array([0.60, 0.64, 0.71])
    assert eagc.stats["acc_all"] == pytest.approx((acc.mean(), acc.std(ddof=1), 3))
    assert eagc.stats["gdc"] == pytest.approx((0.28, np.std([0.30, 0.26], ddof=1), 2))
    base = groups[1].stats["acc_all"]
    assert base[0] == pytest.approx(0.45) and base[1] == pytest.approx(math.sqrt(0.005))
    single = groups[2]
    assert single.failed == ["eagc-1.4-1"] and single.seeds == [0]
    mean, std, n = single.stats["acc_all"]
    assert (mean, n) == (0.70, 1) and math.isnan(std)  # the failed seed's 0.0 is not counted


def test_table_and_summary_text():
    rows = [_row("eagc", 0.7, s, a, 0.3) for s, a in ((0, 0.612), (1, 0.634))]
    rows.append(_row("eagc|x", 0.7, 0, 0.5, 0.3, status="failed") | {"error": "boom"})
    groups = aggregate(rows, ["variant"], metrics=("acc_all", "acc_old", "acc_new", "gdc"))
    for g in groups:
        g.stats.update({m: (math.nan, math.nan, 0) for m in ("gdc_raw", "soc", "gdc_all")})
        g.stats["soc_all"] = (math.nan, math.nan, 0)
    header, body = table(groups, ["variant"])
    assert header[:2] == ["variant", "seeds"] and "All" in header
    # the paper's window is the headline, the whole run stands beside it, each labelled
    assert header.index("GDC (first 200 steps)") < header.index("GDC (whole run)")
    assert "ProbeSet SOC (first 200 steps)" in header and "ProbeSet SOC (whole run)" in header
    std = np.std([61.2, 63.4], ddof=1)
    assert body[0][header.index("All")] == f"62.3 ± {std:.1f}"
    assert body[1][1] == "0 (1 missing)" and body[1][header.index("All")] == "-"
    text = summary_markdown(groups, ["variant"], rows)
    assert "eagc\\|x" in text and "boom" in text  # a | in a value does not break the table
    assert format_stat((0.5, math.nan, 1)) == "0.500"


def test_results_csv_has_one_row_per_cell():
    rows = [_row("eagc", 0.7, 0, 0.6, 0.3), _row("baseline", 0.7, 0, 0.5, None)]
    lines = results_csv(rows).splitlines()
    assert lines[0] == "cell,status,variant,aga_weight,seed,acc_all,gdc"
    assert lines[2].endswith(",0.5,")  # None is an empty field


def test_table_says_when_a_number_covers_fewer_seeds():
    rows = [
        _row("eagc", 0.7, 0, 0.60, 0.30),
        _row("eagc", 0.7, 1, 0.64, None),  # NaN GDC on this seed
        _row("eagc", 0.7, 2, 0.71, 0.26),
    ]
    groups = aggregate(rows, ["variant"], metrics=METRICS)
    header, body = table(groups, ["variant"])
    gdc = body[0][header.index("GDC (first 200 steps)")]
    assert gdc.endswith("(n=2)")
    assert "(n=" not in body[0][header.index("All")]


def test_cell_row_reads_the_papers_window_as_the_headline(tmp_path):
    from entangle.ablation.results import cell_row
    from entangle.ablation.spec import Cell
    from entangle.gcd.train import TrainConfig

    summary = {"gdc_early": 0.41, "gdc_early_eagc": 0.33, "gdc_mean": 0.2, "gdc_mean_eagc": 0.1}
    summary |= {"soc_early": 0.7, "soc_all": 0.6, "soc": 0.5, "acc_all": 0.9}
    (tmp_path / "DONE").write_text(json.dumps({"summary": summary}))
    cell = Cell(name="c", config=TrainConfig(eagc=True), settings={"variant": "eagc"})
    row = cell_row(cell, tmp_path)
    assert (row["gdc"], row["gdc_raw"], row["soc"]) == (0.33, 0.41, 0.7)
    assert (row["gdc_all"], row["gdc_raw_all"], row["soc_all"]) == (0.1, 0.2, 0.6)
    assert row["soc_last_epoch"] == 0.5
