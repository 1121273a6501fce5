"""entangle.report.verdict_detail: class shares per row, their ranking, and EEP's diagnosis."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from entangle.report.uncertainty import Estimate
from entangle.report.verdict_detail import (
    EEPDiagnosis,
    class_matrix,
    class_name,
    class_ranking,
    eep_diagnosis,
    eep_line,
    has,
    has_row_counts,
    setting_estimate,
    subsample_clause,
)


def _run(steps, config=None, meta=None):
    return SimpleNamespace(
        steps=steps, config=config or {}, meta=meta or {}, group="", is_analysis=False
    )


def _step(shares, rows=None, key="class"):
    node = {key: shares}
    if rows is not None:
        node[f"{key}_rows"] = rows
    return {"attribution": {"unsup_rows": node}, "raw": {"cos": sum(shares)}}


def test_class_matrix_per_step_and_per_row():
    run = _run([_step([-0.4, 0.2], rows=[4, 2]), _step([-0.2, 0.0], rows=[2, 0]), {"step": 9}])
    mat, kind = class_matrix(run)
    assert kind == "class"
    np.testing.assert_allclose(mat, [[-0.4, 0.2], [-0.2, 0.0]])
    per_row, _ = class_matrix(run, per_row=True)
    np.testing.assert_allclose(per_row, [[-0.1, 0.1], [-0.1, np.nan]])
    assert has_row_counts(run) and not has_row_counts(_run([_step([1.0])]))
    assert class_matrix(_run([_step([0.5], key="cluster")]))[1] == "cluster"
    assert class_matrix(_run([{"step": 0}]))[0].shape == (0, 0)


def test_class_ranking_puts_the_class_that_pulls_hardest_first():
    steps = [_step([0.1, -0.5, 0.0], rows=[1, 5, 1]) for _ in range(6)]
    ranking = class_ranking([_run(steps)])
    assert [c for c, _ in ranking] == [1, 2, 0]
    assert ranking[0][1].value == pytest.approx(-0.1)  # per row: -0.5 over 5 rows
    no_counts = [_step([0.1, -0.5, 0.0]) for _ in range(6)]
    assert class_ranking([_run(no_counts)])[0][1].value == -0.5  # summed shares
    assert class_ranking([_run([{"step": 0}])]) == []


def test_a_subsampled_attribution_says_its_rows_in_the_verdict_line():
    def sub(step, rows):
        entry = _step([0.1, -0.5], rows=[1, 3])
        entry["attribution"]["subsample"] = {"rows": rows, "of": 16, "batch_rows": [], "seed": step}
        return entry

    full = _run([_step([0.1, -0.5], rows=[1, 3]) for _ in range(4)])
    assert subsample_clause([full]) == ""
    eight = _run([sub(s, 8) for s in range(4)])
    assert subsample_clause([eight, eight]) == (
        "; attribution over a subsample: 8 of 16 rows per attributed step (seeded by step), "
        "so the shares cover those rows only"
    )
    eight.name, full.name = "s0", "s1"
    mixed = subsample_clause([eight, full])
    assert "(s0: 8 of 16, s1: every row)" in mixed and "cover those rows only" in mixed


def test_class_name_uses_the_ground_truth_name_only_for_classes():
    run = _run([], config={"class_names": ["cat", "dog"]})
    assert class_name(run, 1, "class") == "class dog"
    assert class_name(run, 1, "cluster") == "cluster 1"
    assert class_name(run, 5, "class") == "class 5"


def test_setting_estimate_within_one_run_and_across_seeds():
    one = setting_estimate([_run([])], lambda r: np.array([1.0, 2.0, 3.0, np.nan]))
    assert one.value == 2.0 and one.n == 3
    runs = [_run([]), _run([]), _run([])]
    values = iter([[1.0, 3.0], [4.0], [7.0]])
    seeds = setting_estimate(runs, lambda r: np.array(next(values)))
    # the seed means 2, 4, 7
    assert seeds.value == pytest.approx(13 / 3) and seeds.n == 3 and seeds.low < 2 < 7 < seeds.high
    assert has(_run([{"raw": {"cos": 0.1}}]), "raw") and not has(_run([{"step": 0}]), "eagc")


CALIBRATION = {
    "aperture": 2.0,
    "auto_aperture": 0.7,
    "n_unlabeled": 50,
    "at_aperture": {"gap": 0.01, "gap_new": 0.02, "share_active": 0.1, "mean_weight": 0.005,
                    "quota": 0.9, "effective_rank": 3.0},
    "at_auto": {"gap": 0.3, "gap_new": 0.4, "share_active": 0.9},
}  # fmt: skip


def test_a_baselines_would_be_diagnosis_comes_from_its_calibration():
    run = _run(
        [{"raw": {"cos": 0.1}}], config={"eep_weight": 0.5}, meta={"calibration": CALIBRATION}
    )
    diag = eep_diagnosis([run], setting_estimate)
    assert diag.source == "would-be, on the starting features" and diag.inert
    assert (diag.weight.value, diag.gap.value, diag.weight.n) == (0.005, 0.01, 50)
    line = eep_line("base", diag)
    assert line.startswith("base: EEP: inert, it barely reweights (would-be")
    assert "'auto' picks aperture 0.7" in line and "unlabeled-new gap (oracle) 0.020" in line
    assert diag.as_json()["recorded"]["auto_aperture"] == 0.7
    assert eep_diagnosis([_run([])], setting_estimate) is None


def test_a_strong_gap_or_weight_acts():
    acting = EEPDiagnosis(
        "during training",
        Estimate(0.2),
        Estimate(0.8),
        Estimate(0.3),
        Estimate(math.nan),
        0.5,
        None,
    )
    assert not acting.inert and acting.short().startswith("it acts (during training)")
    assert "80% of unlabeled rows above 0.01" in acting.short()
    assert [row[0] for row in acting.rows()][0] == "EEP mean weight (during training)"
    assert "recorded" not in acting.as_json()
