"""Verdict: numbers from the records, seeds vs bootstrap, planted class ranked, inert diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from entangle.report.load import load_runs
from entangle.report.verdict import class_ranking, compute_verdict, settings
from entangle.runs.directory import RunWriter


def _run(path, *, seed, eagc, n=260, gap=0.02, weight=0.01, planted=2, cos_shift=0.0):
    rng = np.random.default_rng(seed)
    config = {"data": "synthetic", "eagc": eagc, "eep_weight": 0.5, "class_names": list("abcd")}
    cal = {
        "aperture": 2.0,
        "auto_aperture": 0.7,
        "at_aperture": {"gap": gap, "gap_new": gap, "share_active": 0.1, "mean_weight": weight,
                        "quota": 0.9, "effective_rank": 3.0},
        "at_auto": {"gap": 0.3, "gap_new": 0.4, "share_active": 0.9, "mean_weight": 0.2},
        "n_unlabeled": 100,
    }  # fmt: skip
    with RunWriter(path, config=config, seed=seed, name=path.name) as w:
        w.write_meta("calibration", cal)
        for step in range(n):
            cos = float(rng.normal(-0.1 + cos_shift, 0.2))
            shares = rng.normal(0, 0.01, 4)
            shares[planted] -= 0.05
            rec = {
                "step": step,
                "raw": {"last_block": {"cos": cos, "gdc": 0.4 + 0.01 * step / n}},
                "attribution": {"unsup_rows": {"class": shares.tolist(), "sum": cos}},
            }
            if eagc:
                rec["eagc"] = {"last_block": {"cos": cos + 0.05, "gdc": 0.3}}
                rec["energy"] = {
                    "ratio": {"labeled": {"mean": 0.9}, "unlabeled": {"mean": 0.9 - gap},
                              "unlabeled_new": {"mean": 0.9 - 2 * gap}},
                    "eep_weight": {"mean": weight, "frac_active": 0.05},
                }  # fmt: skip
            w.write_step(rec)
        w.write_epoch({"epoch": 0, "acc_all": 0.5 + 0.01 * seed})
        w.finish({})
    return path


def test_conflict_rate_is_the_share_of_negative_cosines_over_the_first_200_steps(tmp_path):
    path = _run(tmp_path / "base", seed=0, eagc=False)
    runs = load_runs([path])
    verdict = compute_verdict(runs)
    cos = np.array([s["raw"]["last_block"]["cos"] for s in runs[0].steps])
    want = float((cos[:200] < 0).mean())
    row = next(r for r in verdict.rows if r[1].startswith("conflict rate"))
    assert row[2].startswith(f"{want:.0%}")
    assert "n=200 probed steps" in row[2]
    assert f"{want:.0%}" in verdict.lines[0]


def test_seeds_of_one_setting_are_summarised_across_seeds(tmp_path):
    paths = [_run(tmp_path / f"s{k}", seed=k, eagc=True) for k in range(3)]
    runs = load_runs(paths)
    assert len(settings(runs)) == 1
    verdict = compute_verdict(runs)
    gdc_change = next(r for r in verdict.rows if r[1].startswith("GDC corrected - raw"))
    assert "across n=3 seeds" in gdc_change[2]
    assert any("lowers the GDC" in line for line in verdict.lines)


def test_planted_class_is_ranked_first_and_eagc_compared_to_baseline(tmp_path):
    base = _run(tmp_path / "base", seed=0, eagc=False, planted=1)
    eagc = _run(tmp_path / "eagc", seed=0, eagc=True, planted=3)
    runs = load_runs([base, eagc])
    assert class_ranking([runs[0]])[0][0] == 1
    assert class_ranking([runs[1]])[0][0] == 3
    verdict = compute_verdict(runs)
    text = "\n".join(verdict.lines)
    assert (
        "hardest against the supervised direction (oracle: ground-truth classes): class b" in text
    )
    assert "eagc vs base" in text


@pytest.mark.parametrize(("gap", "weight", "inert"), [(0.01, 0.005, True), (0.3, 0.2, False)])
def test_eep_diagnosis_says_inert_only_when_gap_and_weights_are_small(tmp_path, gap, weight, inert):
    path = _run(tmp_path / "e", seed=0, eagc=True, gap=gap, weight=weight)
    line = next(x for x in compute_verdict(load_runs([path])).lines if "EEP" in x)
    assert ("EEP is inert on these features" in line) is inert
    assert "'auto' picks aperture 0.7" in line


def test_report_opens_with_the_verdict(built_report):
    html = built_report.read_text(encoding="utf-8")
    assert html.index('id="verdict"') < html.index('id="summary"')
    assert "of the first 200 probed steps" in html
