"""The comparison table: differences to the first run, corrected vs raw when it has no EAGC."""

from __future__ import annotations

import math
from types import SimpleNamespace

from entangle.report.html import delta_table


def test_eagc_rows_compare_with_a_baseline_references_raw_numbers():
    runs = [SimpleNamespace(name="baseline"), SimpleNamespace(name="eagc")]
    nan = math.nan
    baseline = {"gdc_all_raw": 0.40, "gdc_all_eagc": nan, "cos_mean_raw": -0.10}
    baseline["cos_mean_eagc"] = nan
    eagc = {"gdc_all_raw": 0.42, "gdc_all_eagc": 0.30, "cos_mean_raw": -0.12}
    eagc["cos_mean_eagc"] = nan  # a corrected value the run does not have stays "-"
    rows = {r[0]: r for r in delta_table(runs, [baseline, eagc], True)["rows"]}
    # before: "-" on every EAGC row when the first run is a baseline
    assert rows["GDC, EAGC, whole run"][1:] == ["-", "-0.1000 (vs raw)"]
    assert rows["GDC, raw, whole run"][1:] == ["0.4000", "+0.0200"]
    assert rows["Mean cos(g_S, g_U), EAGC"][1:] == ["-", "-"]


def test_two_eagc_runs_compare_corrected_with_corrected():
    runs = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    a = {"gdc_all_raw": 0.40, "gdc_all_eagc": 0.35}
    b = {"gdc_all_raw": 0.41, "gdc_all_eagc": 0.30}
    rows = {r[0]: r for r in delta_table(runs, [a, b], True)["rows"]}
    assert rows["GDC, EAGC, whole run"][1:] == ["0.3500", "-0.0500"]
