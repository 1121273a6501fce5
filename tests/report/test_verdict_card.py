"""entangle.report.verdict_card: the answer card's lines from planted setting facts."""

from __future__ import annotations

from types import SimpleNamespace

from entangle.report.uncertainty import NO_INTERVAL, SEED_T, WELCH, WITHIN_RUN, Estimate
from entangle.report.verdict_card import (
    SettingFacts,
    answer_card,
    compact,
    compared_line,
    correction_of,
    glance_table,
)
from entangle.report.verdict_detail import EEPDiagnosis


def _est(value, low=float("nan"), high=float("nan"), method=SEED_T, n=5, n_b=0):
    return Estimate(value, low, high, n=n, method=method, n_b=n_b)


def _eep(weight, gap):
    return EEPDiagnosis("during training", _est(weight), _est(0.1), _est(gap), _est(0.0), 0.5, None)


BASE = SettingFacts("base", 5, "first 200 steps", rate=_est(0.6, 0.55, 0.65), gdc=_est(0.4))
TOP = SettingFacts(
    "eagc", 5, "first 200 steps", rate=_est(0.5, 0.45, 0.55), gdc=_est(0.35),
    change=_est(-0.1, -0.15, -0.05, method=WITHIN_RUN, n=200), coordination="eagc",
    baseline="base",
    versus={"acc_all_last": _est(0.02, -0.01, 0.05, method=WELCH, n=5, n_b=5),
            "gdc_applied_first200": _est(-0.05, -0.08, -0.02, method=WELCH, n=5, n_b=5)},
    eep=_eep(0.01, 0.01),
)  # fmt: skip


def test_the_card_answers_entanglement_coordination_accuracy_and_eep():
    card = answer_card([BASE, TOP], TOP)
    assert [line[:4] for line in card] == ["(a) ", "(b) ", "(c) ", "(d) "]
    assert card[0].startswith("(a) Entanglement, base: ") and "60% [55%, 65%]" in card[0]
    assert "conflict rate 50%-60% (lowest eagc, highest base)" in card[0]
    assert "EAGC's correction lowers the GDC of the same steps" in card[1]
    assert "applied - raw -0.100 [-0.150, -0.050]" in card[1]
    assert card[2].startswith("(c) Accuracy, last epoch, eagc minus base: All: no detectable")
    assert card[3].startswith("(d) EEP, eagc: inert, it barely reweights")


def test_nothing_probed_says_so():
    assert answer_card([SettingFacts("x", 1, "steps")], None) == [
        "No probed steps were recorded: nothing to conclude."
    ]


def test_compact_words_follow_the_intervals():
    no_ci = compact([("All", _est(0.001, method=NO_INTERVAL, n=1, n_b=1))])
    assert no_ci.startswith("All +0.001 (no interval: ")
    higher = compact([("New", _est(0.05, 0.01, 0.09, method=WELCH, n=5, n_b=5))])
    assert higher.startswith("New: higher by +0.050 [+0.010, +0.090]")
    assert "no detectable: CI holds 0" in higher
    assert compact([("All", _est(float("nan")))]) == ""


def test_glance_table_has_one_row_per_setting_with_dashes_for_missing():
    table = glance_table([BASE, TOP])
    assert table["header"][0] == "Setting" and len(table["rows"]) == 2
    base, top = table["rows"]
    assert base[:4] == ["base", "5", "60% [55%, 65%]", "0.400"] and base[4:6] == ["-", "-"]
    assert top[5] == "base" and top[-1] == "inert (mean weight 0.010)"


def _checkpoint(name, epoch, **config):
    cfg = {"data": "digits", "seed": 0, "batch_size": 64, "n_samples": 100} | config
    return SimpleNamespace(
        name=name, config=cfg, epoch_label=lambda _e: f"checkpoint (epoch {epoch})"
    )


def test_correction_and_compared_lines_of_analysed_checkpoints():
    plain = _checkpoint("a", 1, eep_weight=0.5, aga_weight=0.7)
    referenced = _checkpoint("b", 2, eep_weight=0.5, aga_weight=0.7, reference="/x/ref.pt")
    assert correction_of(plain).startswith("EEP only (beta 0.5)")
    assert correction_of(referenced).startswith("AGA (weight 0.7) and EEP (beta 0.5)")
    assert "reference model ref.pt" in correction_of(referenced)
    line = compared_line([plain, referenced], 8, [plain])
    assert line.startswith("Compared: 2 checkpoints, a (checkpoint (epoch 1)), b (")
    assert "the same 8 gradient batches of 64 rows (seed 0" in line and "never applied" in line
    other = _checkpoint("c", 3, seed=1)
    assert "on differing data, seeds or batch sizes" in compared_line([plain, other], 8, [])
    assert compared_line([plain], 4, []).startswith("Analysed: a (checkpoint (epoch 1)), on")
