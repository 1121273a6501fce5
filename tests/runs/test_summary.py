"""Summary numbers from probe records: flat and grouped records, nulls, the early window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entangle.report.summary import format_delta
from entangle.runs.records import default_group, flatten_config, gradient_series, nan_reasons
from entangle.runs.summary import EARLY_STEPS, accuracy_summary, run_summary


def _steps(cos_values, grouped: bool, start: int = 0):
    out = []
    for i, c in enumerate(cos_values):
        r = {"cos": c, "gdc": None if c is None else 1.0 - c}
        out.append(
            {
                "step": start + 10 * i,
                "raw": {"last_block": r, "all": {"cos": 0.9}} if grouped else r,
            }
        )
    return out


@pytest.mark.parametrize("grouped", [False, True])
def test_gradient_statistics_match_numpy(grouped):
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, size=60).tolist()
    cos[5] = None  # NaN stored as null
    steps = _steps(cos, grouped, start=7)
    group = default_group(steps)
    assert group == ("last_block" if grouped else "")
    s = run_summary(steps, [], group)
    ref = np.array([np.nan if c is None else c for c in cos])
    ok = ref[~np.isnan(ref)]
    assert s["cos_mean_raw"] == pytest.approx(ok.mean())
    assert s["cos_median_raw"] == pytest.approx(np.median(ok))
    assert s["conflict_rate_raw"] == pytest.approx((ok < 0).mean())
    early = ref[: EARLY_STEPS // 10]  # steps 7, 17, ... below 7 + 200
    assert s["gdc_early_raw"] == pytest.approx(np.nanmean(1 - early))
    assert s["gdc_all_raw"] == pytest.approx(np.nanmean(1 - ref))
    assert s["nan_cos_raw"] == 1 and s["steps"] == 60
    assert math.isnan(s["cos_mean_eagc"]) and math.isnan(s["soc_all"])


def test_missing_fields_read_as_nan_not_errors():
    steps = [{"step": 0}, {"raw": "garbage"}, {"step": 2, "raw": {"cos": True}}]
    x, y = gradient_series(steps, "raw", "cos")
    assert x.tolist() == [0, 1, 2] and np.isnan(y).all()
    assert nan_reasons([{"nan": {"raw.cos": "zero"}}, {"nan": {"raw.cos": "zero"}}, {}]) == {
        "raw.cos": 2
    }


def test_accuracy_best_is_the_epoch_with_best_all():
    epochs = [
        {"epoch": 0, "acc_all": 0.4, "acc_old": 0.9, "acc_new": 0.1},
        {"epoch": 1, "acc_all": 0.6, "acc_old": 0.7, "acc_new": 0.5},
        {"epoch": 2, "acc_all": None, "acc_old": 0.8},
        {"epoch": 3, "acc_all": 0.5, "acc_old": 0.6, "acc_new": 0.4},
    ]
    a = accuracy_summary(epochs)
    assert (a["acc_all_best"], a["acc_old_best"], a["acc_new_best"], a["best_epoch"]) == (
        0.6,
        0.7,
        0.5,
        1.0,
    )
    assert (a["acc_all_last"], a["acc_new_last"]) == (0.5, 0.4)


def test_formatting_and_config_flattening():
    assert format_delta(0.5, 0.25) == "+0.2500" and format_delta(None, 1.0) == "-"
    rows = flatten_config({"a": {"b": 1, "c": [1, 2]}, "d": None})
    assert rows == [("a.b", "1"), ("a.c", "1, 2"), ("d", "None")]


def test_an_attached_checkpoints_gradient_rows_come_from_its_last_epoch_and_group():
    from entangle.runs.summary import checkpoint_gradient_summary

    def rec(epoch, gdc):
        grads = {
            "raw": {"all": {"gdc": 9.0}, "last_block": {"gdc": gdc, "cos": -0.1, "conflict": 1.0}},
            "eagc": {"all": {"gdc": gdc / 2, "cos": None}},
            "eagc_authors": {"last_block": {"gdc": 5.0}},
            "batches": 8,
        }
        return {"epoch": epoch, "acc_all": 0.4, "checkpoint": {"gradients": grads}}

    assert checkpoint_gradient_summary([{"epoch": 0, "acc_all": 0.3}], "") == {}
    assert checkpoint_gradient_summary([{"epoch": 0, "checkpoint": {"file": "m.pt"}}]) == {}
    out = checkpoint_gradient_summary([rec(2, 0.3), {"epoch": 3}, rec(5, 0.431)], "")
    assert out == {
        "epoch": 5.0,
        "batches": 8.0,
        "attached": 2,
        # last_block preferred; a kind without it falls back to its group; null cos left out
        "gdc_all_raw": 0.431,
        "cos_mean_raw": -0.1,
        "conflict_rate_raw": 1.0,
        "gdc_all_eagc": 0.431 / 2,
    }
    assert checkpoint_gradient_summary([rec(5, 0.431)], "all")["gdc_all_raw"] == 9.0
