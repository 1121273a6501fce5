"""Uncertainty: t intervals between settings (paired / Welch) and within-run batch means.

Coverage simulations: normal seeds for the between-run intervals, AR(1) steps for the
within-run one; each checks that a nominal 95% interval covers the truth 95% +- a few points.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from entangle.report.uncertainty import (
    NO_INTERVAL,
    PAIRED,
    WELCH,
    WITHIN_RUN,
    across_seeds,
    autocorrelation_time,
    compare,
    within_run,
    within_run_rate,
)


def _ar1(rng, phi: float, n: int, reps: int) -> np.ndarray:
    e = rng.normal(size=(reps, n + 100))
    x = np.zeros_like(e)
    for t in range(1, e.shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x[:, 100:]


@pytest.mark.parametrize("n", [3, 5])
def test_paired_and_welch_intervals_cover_95_percent_on_normal_seeds(n):
    rng = np.random.default_rng(n)
    reps = 20000
    shared = rng.normal(0, 1.0, size=(reps, n))  # the seed's data order, common to both sides
    a = 0.3 + shared + rng.normal(0, 0.5, size=(reps, n))
    b = shared + rng.normal(0, 0.5, size=(reps, n))
    # paired (same seeds): t(n-1) on the per-seed differences, as compare() computes it
    d = a - b
    half = stats.t.ppf(0.975, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
    paired = np.mean(np.abs(d.mean(axis=1) - 0.3) <= half)
    # Welch (other seeds, unequal spreads): Welch-Satterthwaite df
    a2 = 0.3 + rng.normal(0, 2.0, size=(reps, n))
    b2 = rng.normal(0, 0.5, size=(reps, n))
    va, vb = a2.var(axis=1, ddof=1) / n, b2.var(axis=1, ddof=1) / n
    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    half_w = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    welch = np.mean(np.abs(a2.mean(axis=1) - b2.mean(axis=1) - 0.3) <= half_w)
    assert abs(paired - 0.95) < 0.02 and abs(welch - 0.95) < 0.02, (paired, welch)
    # the vectorised formulas above are compare()'s: check them on a few replicates
    for i in range(3):
        p = compare(dict(enumerate(a[i])), dict(enumerate(b[i])))
        assert p.method == PAIRED and p.high - p.value == pytest.approx(half[i])
        w = compare(dict(enumerate(a2[i])), {k + 10: v for k, v in enumerate(b2[i])})
        assert w.method == WELCH and w.high - w.value == pytest.approx(half_w[i])
        assert w.value == pytest.approx(a2[i].mean() - b2[i].mean())


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_within_run_interval_covers_95_percent_on_ar1_steps(phi):
    rng = np.random.default_rng(int(phi * 10))
    x = _ar1(rng, phi, 90, 2000)
    hits = [(e.low <= 0 <= e.high) for e in map(within_run, x)]
    coverage = float(np.mean(hits))
    assert abs(coverage - 0.95) <= 0.03, coverage


def test_autocorrelation_time_of_ar1_is_near_its_formula():
    x = _ar1(np.random.default_rng(3), 0.8, 20000, 1)[0]
    assert autocorrelation_time(x) == pytest.approx((1 + 0.8) / (1 - 0.8), rel=0.15)
    iid = np.random.default_rng(4).normal(size=5000)
    assert autocorrelation_time(iid) == pytest.approx(1.0, abs=0.15)


def test_within_run_is_labelled_and_drops_nan():
    est = within_run([1.0, np.nan, 3.0, 2.0, 2.0, 1.0, 3.0, 2.0])
    assert est.value == pytest.approx(2.0) and est.n == 7 and est.method == WITHIN_RUN
    assert "within-run (steps)" in est.how() and "not other seeds" in est.how()
    assert math.isnan(within_run([np.nan]).value)


def test_one_setting_across_seeds_uses_t_quantiles():
    vals = [0.5, 0.6, 0.7]
    est = across_seeds(vals)
    half = 4.302652729911275 * np.std(vals, ddof=1) / math.sqrt(3)  # t(2) 97.5% quantile
    assert est.value == pytest.approx(0.6) and est.high - est.value == pytest.approx(half)


def test_one_run_on_a_side_has_no_interval_and_says_so():
    d = compare({0: 0.4}, {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.5, 4: 0.6})
    assert d.method == NO_INTERVAL and d.value == pytest.approx(0.4 - 0.58)
    assert not d.has_interval and (d.n, d.n_b) == (1, 5)
    assert "no between-run interval" in d.how() and "n = 1 vs 5 seeds" in d.how()


def test_wording_follows_the_interval():
    same = compare({0: 0.5, 1: 0.6, 2: 0.4}, {0: 0.52, 1: 0.55, 2: 0.45})
    assert same.verdict().startswith("no detectable difference") and "n = 3 vs 3" in same.verdict()
    up = compare({0: 0.9, 1: 1.0, 2: 0.95}, {0: 0.5, 1: 0.6, 2: 0.55})
    assert up.verdict().startswith("higher by +0.400")


@pytest.mark.parametrize(("phi", "p"), [(0.0, 0.6), (0.5, 0.6), (0.5, 0.9), (0.8, 0.6)])
def test_within_run_rate_stays_in_0_1_and_covers_95_percent_on_thresholded_ar1(phi, p):
    # 0/1 steps as a conflict indicator: cos < 0 of a correlated series, true share p
    rng = np.random.default_rng(int(phi * 10) + int(p * 100))
    latent = _ar1(rng, phi, 90, 2000) * math.sqrt(1 - phi**2)  # unit stationary variance
    steps = (latent < stats.norm.ppf(p)).astype(np.float64)
    ests = [within_run_rate(x) for x in steps]
    assert all(0.0 <= e.low <= e.value <= e.high <= 1.0 for e in ests)
    coverage = float(np.mean([e.low <= p <= e.high for e in ests]))
    assert abs(coverage - 0.95) <= 0.03, coverage
    # the plain batch-means interval on the same steps leaves [0, 1] (what this replaces)
    outside = np.mean([(e.low < 0) | (e.high > 1) for e in map(within_run, steps)])
    assert p < 0.9 or outside > 0.2


def test_within_run_rate_of_a_constant_series_is_a_wilson_interval_inside_0_1():
    est = within_run_rate(np.ones(90))
    assert est.value == 1.0 and est.high == 1.0 and 0.9 < est.low < 1.0
    assert "Wilson" in est.how() and "effective n = 90" in est.how()


def test_rates_across_seeds_are_clipped_and_keep_the_t_intervals_coverage():
    # two seeds of a rate near 1 (Beta(40, 4), mean 0.909): t(1) = 12.7 sends the plain
    # interval far past 100%
    rng = np.random.default_rng(7)
    reps, p = 4000, 40 / 44
    rates = rng.beta(40, 4, size=(reps, 2))
    plain = [across_seeds(r) for r in rates]
    clipped = [across_seeds(r, (0.0, 1.0)) for r in rates]
    assert np.mean([e.high > 1 for e in plain]) > 0.5
    assert all(0.0 <= e.low <= e.high <= 1.0 for e in clipped)
    hits_plain = [e.low <= p <= e.high for e in plain]
    hits_clipped = [e.low <= p <= e.high for e in clipped]
    assert hits_plain == hits_clipped  # clipping to the rate's range never changes a hit
    assert abs(np.mean(hits_clipped) - 0.95) <= 0.03
    wide = across_seeds([0.2, 0.95], (0.0, 1.0))
    assert (wide.low, wide.high) == (0.0, 1.0) and "clipped to [0, 1]" in wide.how()
    # a difference of two rates is clipped to [-1, 1], and said so
    d = compare({0: 0.1, 1: 0.9}, {0: 0.8, 1: 0.2}, (-1.0, 1.0))
    assert d.low == -1.0 and d.high == 1.0 and "clipped to [-1, 1]" in d.how()
    inside = across_seeds([0.5, 0.6, 0.55], (0.0, 1.0))
    assert inside.note == "" and inside == across_seeds([0.5, 0.6, 0.55])
