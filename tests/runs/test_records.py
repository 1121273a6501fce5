"""entangle.runs.records: readers that turn missing fields and nulls into NaN, never raise."""

from __future__ import annotations

import math

import numpy as np

from entangle.runs import records as r

NESTED = [
    {"step": 0, "raw": {"all": {"cos": 0.5}, "last_block": {"cos": -0.5}}},
    {"step": 4, "raw": {"last_block": {"cos": None}}, "nan": {"cos": "no labeled rows"}},
    {"raw": {"last_block": {"cos": 0.25}}, "nan": {"cos": "x", "gdc": "y"}},
]
FLAT = [{"step": 1, "raw": {"cos": 0.1, "gdc": 0.9}}, {"step": 2, "eagc": {"cos": 0.2}}]


def test_as_float_and_dig_tolerate_anything():
    assert [r.as_float(v) for v in (1, 2.5)] == [1.0, 2.5]
    assert all(math.isnan(r.as_float(v)) for v in (None, True, "1", {"a": 1}))
    assert r.dig({"a": {"b": 3}}, "a", "b") == 3
    assert r.dig({"a": 3}, "a", "b") is None and r.dig(None, "a") is None


def test_groups_and_the_default_group():
    assert r.gradient_groups(NESTED) == ["all", "last_block"]
    assert r.gradient_groups(FLAT) == [""] and r.gradient_groups(FLAT, "eagc") == [""]
    assert r.default_group(NESTED) == "last_block"
    assert r.default_group([{"raw": {"head": {"cos": 1}}}]) == "head"
    assert r.default_group([{"eagc": {"g": {"cos": 1}}}]) == "g"
    assert r.default_group([]) == ""


def test_gradient_series_reads_flat_and_grouped_records_with_nan_for_missing():
    steps, values = r.gradient_series(NESTED, "raw", "cos", "last_block")
    assert steps.tolist() == [0, 4, 2]  # position stands in for a missing step
    np.testing.assert_array_equal(values, [-0.5, np.nan, 0.25])
    _, first = r.gradient_series(NESTED, "raw", "cos")  # no group: the first one recorded
    assert first[0] == 0.5
    _, flat = r.gradient_series(FLAT, "raw", "gdc")
    np.testing.assert_array_equal(flat, [0.9, np.nan])


def test_path_and_summary_series_drop_records_without_the_field():
    records = [{"step": 0, "probeset": {"soc": 0.3}}, {"step": 1}, {"step": 2, "probeset": {}}]
    xs, ys = r.path_series(records, "probeset", "soc")
    assert xs.tolist() == [0.0] and ys.tolist() == [0.3]
    steps = [{"step": 5, "feature": {"labeled": {"mean": 0.1, "q50": 0.2}}}, {"step": 6}]
    xs, cols = r.summary_series(steps, "feature", "labeled")
    assert xs.tolist() == [5.0] and cols["q50"].tolist() == [0.2]
    assert math.isnan(cols["std"][0])


def test_nan_reasons_are_counted_most_frequent_first():
    assert r.nan_reasons(NESTED) == {"cos": 2, "gdc": 1}
    assert r.nan_step_count(NESTED) == 2
    assert r.nan_step_count([{"nan": {}}, {"nan": None}]) == 0


def test_accuracy_protocol_names_old_records_v2():
    assert r.accuracy_protocol([]) == "-"
    assert r.accuracy_protocol([{"acc_all": 0.5}]) == "v2"
    epochs = [{"acc_all": 0.5, "acc_protocol": "v1"}, {"acc_all": 0.6}, {"x": 1}]
    assert r.accuracy_protocol(epochs) == "v1, v2"


def test_flatten_config_dots_nested_keys_and_shortens_long_values():
    rows = dict(r.flatten_config({"a": {"b": 1, "c": {}}, "ids": list(range(20)), "s": "x" * 300}))
    assert rows["a.b"] == "1" and rows["a.c"] == "{}"
    assert rows["ids"].endswith(", ... (20 items)") and rows["ids"].startswith("0, 1, 2")
    assert len(rows["s"]) == 200 and rows["s"].endswith("...")
    assert r.flatten_config(None) == [] and r.flatten_config(3) == [("config", "3")]
