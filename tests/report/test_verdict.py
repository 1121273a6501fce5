"""Verdict: numbers from the records, seeds vs bootstrap, planted class ranked, inert diagnosis."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from entangle.report.load import load_runs
from entangle.report.verdict import compute_verdict, settings
from entangle.report.verdict_detail import class_ranking
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
    assert "within-run (steps)" in row[2] and "n=200 probed steps" in row[2]
    assert "first 200 training steps (200 probed)" in row[1]
    assert f"{want:.0%}" in verdict.card[0]


def test_seeds_of_one_setting_are_summarised_across_seeds(tmp_path):
    paths = [_run(tmp_path / f"s{k}", seed=k, eagc=True) for k in range(3)]
    runs = load_runs(paths)
    assert len(settings(runs)) == 1
    verdict = compute_verdict(runs)
    gdc_change = next(r for r in verdict.rows if r[1].startswith("GDC corrected - raw"))
    assert "t interval across n=3 seeds" in gdc_change[2]
    assert any("lowers the GDC" in line for line in verdict.card)


def test_planted_class_is_ranked_first_and_eagc_compared_to_baseline(tmp_path):
    base = _run(tmp_path / "base", seed=0, eagc=False, planted=1)
    eagc = _run(tmp_path / "eagc", seed=0, eagc=True, planted=3)
    runs = load_runs([base, eagc])
    assert class_ranking([runs[0]])[0][0] == 1
    assert class_ranking([runs[1]])[0][0] == 3
    verdict = compute_verdict(runs)
    text = "\n".join(verdict.lines)
    assert "ranked by summed share (no row counts recorded) (oracle: ground-truth classes)" in text
    assert "selected as the most negative of 4" in text and ": class b" in text
    assert any(c["a"] == "eagc" and c["b"] == "base" for c in verdict.comparisons)


@pytest.mark.parametrize(("gap", "weight", "inert"), [(0.01, 0.005, True), (0.3, 0.2, False)])
def test_eep_diagnosis_says_inert_only_when_gap_and_weights_are_small(tmp_path, gap, weight, inert):
    path = _run(tmp_path / "e", seed=0, eagc=True, gap=gap, weight=weight)
    line = next(x for x in compute_verdict(load_runs([path])).lines if "EEP" in x)
    assert ("inert, it barely reweights" in line) is inert
    assert "'auto' picks aperture 0.7" in line


def test_report_opens_with_the_verdict(built_report):
    html = built_report.read_text(encoding="utf-8")
    assert html.index('id="verdict"') < html.index('id="summary"')
    assert "of the first 200 training steps (" in html
    assert html.index('class="answer-card"') < html.index("Per-run and per-class detail")


def _acc_run(path, *, seed, eagc, acc):
    config = {"data": "synthetic", "eagc": eagc}
    with RunWriter(path, config=config, seed=seed, name=path.name) as w:
        for step in range(0, 300, 3):  # probe_every 3: 67 probed in the first 200 steps
            rec = {"step": step, "raw": {"cos": -0.1, "gdc": 0.4 + 0.01 * seed}}
            if eagc:
                rec["eagc"] = {"cos": 0.0, "gdc": 0.3}
            w.write_step(rec)
        w.write_epoch({"epoch": 0, "acc_all": acc, "acc_old": acc, "acc_new": acc})
        w.finish({})
    return path


@pytest.mark.parametrize(
    ("n_base", "n_eagc", "paired"), [(1, 5, False), (5, 5, True), (3, 3, False)]
)
def test_settings_are_compared_by_seed_means_with_t_intervals(
    tmp_path, monkeypatch, n_base, n_eagc, paired
):
    from scipy import stats

    from entangle.report import build
    from entangle.report.build import build_report

    # the figures are not what this test reads: skip drawing them (keeps it fast)
    monkeypatch.setattr(build, "cached_figure", lambda *args, **kwargs: None)

    rng = np.random.default_rng(n_base + n_eagc)
    base_acc = rng.uniform(0.4, 0.6, n_base)
    eagc_acc = rng.uniform(0.4, 0.7, n_eagc)
    shift = 0 if paired else 10  # 3 vs 3 on different seeds: Welch
    paths = [_acc_run(tmp_path / f"base-s{k}", seed=k, eagc=False, acc=a)
             for k, a in enumerate(base_acc)]  # fmt: skip
    paths += [_acc_run(tmp_path / f"eagc-s{k + shift}", seed=k + shift, eagc=True, acc=a)
              for k, a in enumerate(eagc_acc)]  # fmt: skip
    index = build_report(paths, tmp_path / "report")
    data = json.loads((index.parent / "verdict.json").read_text())
    cmp = next(c for c in data["comparisons"] if c["metric"] == "acc_all_last")
    d = eagc_acc.mean() - base_acc.mean()
    assert cmp["difference"] == pytest.approx(d) and (cmp["n_a"], cmp["n_b"]) == (n_eagc, n_base)
    assert cmp["window"] == "last epoch"
    html = index.read_text(encoding="utf-8")
    if n_base == 1:
        assert cmp["low"] is None and cmp["method"] == "no between-run interval"
        assert "no interval: n = 5 vs 1 seeds" in html
    elif paired:
        diffs = eagc_acc - base_acc
        half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / np.sqrt(5)
        assert cmp["method"] == "paired t"
        assert (cmp["low"], cmp["high"]) == pytest.approx((d - half, d + half))
    else:
        res = stats.ttest_ind(eagc_acc, base_acc, equal_var=False)
        ci = res.confidence_interval(0.95)
        assert cmp["method"] == "Welch t"
        assert (cmp["low"], cmp["high"]) == pytest.approx((ci.low, ci.high))
    if n_base > 1:
        assert f"[{cmp['low']:+.3f}, {cmp['high']:+.3f}]" in html
        assert f"n = {n_eagc} vs {n_base} seeds" in html
    gdc = next(c for c in data["comparisons"] if c["metric"] == "gdc_raw_first200")
    assert gdc["window"] == "first 200 training steps (67 probed)"
    want = np.mean([0.4 + 0.01 * (k + shift) for k in range(n_eagc)])
    want -= np.mean([0.4 + 0.01 * k for k in range(n_base)])
    assert gdc["difference"] == pytest.approx(want)
    assert {r["name"] for r in data["runs"]} == {p.name for p in paths}


# the demo's six settings: run name -> (config fields that make it, EAGC-corrected, shift of
# the corrected cosine, EEP mean weight); one seed each, like `entangle demo`
DEMO = {
    "baseline": ({"start": "pretrained", "eagc": False}, False, 0.0, 0.0),
    "baseline-reference": ({"start": "reference", "eagc": False}, False, 0.0, 0.0),
    "eagc": ({"start": "reference", "eagc": True}, True, 0.02, 0.02),
    "aga": ({"start": "reference", "eagc": True, "eep": False}, True, 0.01, 0.0),
    "eep": ({"start": "reference", "eagc": True, "aga": False}, True, 0.01, 0.02),
    "eagc-fixed": ({"start": "reference", "eagc": True, "adaptive": False}, True, 0.2, 0.5),
}


def _demo_run(path, fields, eagc, shift, weight, *, seed=0, n=90):
    """A digits-demo-shaped run: 90 probed steps, ProbeSet every 10, 6 epochs of 15 steps."""
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    config = {"data": "digits", "aga": True, "eep": True, "adaptive": True, "eep_weight": 0.5}
    config |= {"probeset_every": 10, "probeset_size": 512, "variant": path.name, **fields}
    would_be = {"gap": 0.03, "gap_new": 0.04, "share_active": 0.6, "mean_weight": 0.016}
    cal = {"aperture": 2.0, "auto_aperture": 2.0, "n_unlabeled": 100, "at_auto": would_be,
           "at_aperture": would_be | {"quota": 0.9, "effective_rank": 3.0}}  # fmt: skip
    with RunWriter(path, config=config, seed=seed, name=path.name) as w:
        w.write_meta("calibration", cal)
        for step in range(n):
            cos = float(np.tanh(-0.3 + step / 100 + rng.normal(0, 0.2)))
            gdc = 0.5 - 0.5 * cos
            rec = {"step": step, "raw": {"last_block": {"cos": cos, "gdc": gdc}}}
            if eagc:
                rec["eagc"] = {"last_block": {"cos": cos + shift, "gdc": gdc - shift / 2}}
                rec["energy"] = {
                    "ratio": {"labeled": {"mean": 0.9}, "unlabeled": {"mean": 0.87},
                              "unlabeled_new": {"mean": 0.86}},
                    "eep_weight": {"mean": weight, "frac_active": 0.58},
                }  # fmt: skip
            if step % 10 == 0:
                rec["probeset"] = {
                    "soc": 0.96 - step / 1e4 + 0.0015,
                    "energy": {g: {"mean": 0.9, "n": k} for g, k in
                               (("labeled", 131), ("unlabeled_old", 126), ("unlabeled_new", 255))},
                }  # fmt: skip
            w.write_step(rec)
        for epoch in range(6):
            step = 15 * (epoch + 1)
            acc = 0.87 + (0.004 if eagc else 0.0) + 0.001 * epoch
            # full-set SOC after the epoch: 0.0015 below the ProbeSet at the same weights
            w.write_epoch({"epoch": epoch, "step": step, "acc_all": acc, "acc_old": 0.97,
                           "acc_new": acc - 0.05, "soc": 0.96 - step / 1e4})  # fmt: skip
        w.finish({})
    return path


def _demo(root):
    return [_demo_run(root / name, *spec) for name, spec in DEMO.items()]


def test_the_six_run_demo_card_is_at_most_8_lines_and_answers_the_four_questions(
    tmp_path, monkeypatch
):
    from entangle.report import build
    from entangle.report.build import build_report

    runs = load_runs(_demo(tmp_path))
    verdict = compute_verdict(runs)
    card = verdict.card
    assert len(card) <= 8, card
    assert [line[:4] for line in card] == ["(a) ", "(b) ", "(c) ", "(b, ", "(d) "]
    # (a) is there entanglement: the headline's baseline with its interval, and the spread
    rate = next(r for r in verdict.runs if r["name"] == "baseline-reference")
    assert f"{rate['conflict_rate_first200']:.0%} [" in card[0]
    assert card[0].startswith("(a) Entanglement, baseline-reference:")
    rates = [r["conflict_rate_first200"] for r in verdict.runs]
    assert f"conflict rate {min(rates):.0%}-{max(rates):.0%}" in card[0]
    # (b) does the coordination change it: full EAGC, same steps and vs its baseline
    assert verdict.headline == {"a": "eagc", "b": "baseline-reference"}
    change = next(c for c in verdict.comparisons if c["a"] == "eagc (applied)")
    assert card[1].startswith("(b) Coordination, eagc: EAGC's correction")
    assert f"applied - raw {change['difference']:+.3f} [" in card[1]
    assert "applied GDC vs baseline-reference" in card[1]
    # (c) does accuracy move, with n and no interval from one run a side
    acc = next(c for c in verdict.comparisons
               if (c["a"], c["metric"]) == ("eagc", "acc_all_last"))  # fmt: skip
    assert f"All {acc['difference']:+.3f}" in card[2] and "n = 1 vs 1 seeds" in card[2]
    # the other settings share one line, the strong correction marked as excluding 0
    assert all(name in card[3] for name in ("aga", "eep", "eagc-fixed"))
    assert "eagc-fixed: GDC applied - raw -0.100*" in card[3]
    # (d) can EEP act: the headline's diagnosis, the others counted
    assert card[4].startswith("(d) EEP, eagc: inert")
    assert "inert in 4 of the other 5" in card[4] and "acts in eagc-fixed" in card[4]
    # every setting's numbers stay one click away, with their intervals
    assert [row[0] for row in verdict.glance["rows"]] == list(DEMO)
    # ... and the page shows the same card (figures skipped: not what this test reads)
    monkeypatch.setattr(build, "cached_figure", lambda *args, **kwargs: None)
    html = build_report([r.path for r in runs], tmp_path / "report").read_text(encoding="utf-8")
    block = html[html.index('<ul class="answer-card">') : html.index("</ul>", html.index(
        '<ul class="answer-card">'))]  # fmt: skip
    assert block.count("<li>") == len(card)
    assert "Every setting at a glance (6)" in html


def test_probeset_soc_is_named_a_subset_with_its_measured_offset(tmp_path):
    runs = load_runs(_demo(tmp_path))
    note = compute_verdict(runs).probeset
    assert "subset estimate: 512 fixed rows" in note and "every 10 training steps" in note
    assert "9 evaluations per run" in note
    # ProbeSet steps 30 and 60 share the weights of the epoch records at steps 30 and 60
    assert "12 pairs in 6 of 6 runs" in note and "+0.0015 against the full set" in note
    # a loop without the recipe's probeset_every: the offset is not guessed
    other = _demo_run(tmp_path / "own-loop", {"probeset_every": None}, False, 0.0, 0.0)
    note = compute_verdict(load_runs([other])).probeset
    assert "not measured in these runs" in note


def test_ablation_cells_of_one_setting_are_named_by_their_settings_and_seeds():
    from types import SimpleNamespace

    from entangle.report.verdict import label

    cells = [SimpleNamespace(name=f"variant=eagc__aga_weight=0.7__seed={s}") for s in (0, 1, 4)]
    assert label(cells) == "variant=eagc, aga_weight=0.7 (seeds 0,1,4)"
    # cells that differ in more than their seed keep the run names
    mixed = cells[:1] + [SimpleNamespace(name="variant=aga__aga_weight=0.7__seed=1")]
    assert "(seeds" not in label(mixed)
    assert label([SimpleNamespace(name=f"baseline-s{s}") for s in (0, 1)]) == "baseline-s{0,1}"
