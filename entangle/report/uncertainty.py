"""Uncertainty of report numbers: between settings across seeds, or within one run's steps.

Two different questions, never mixed (docs/calibration.md, "uncertainty"):

* **Between runs** — would other seeds agree? A setting is a group of runs differing only in
  seed; two settings are compared by the difference of their seed means, with a paired t
  interval when both sides have the same seeds (same data order), else Welch's t interval
  (Welch-Satterthwaite degrees of freedom). With one run on a side there is no between-run
  interval, and :meth:`Estimate.how` says so. Quantiles are Student's t (scipy), never 1.96.
* **Within a run (steps)** — how much do this run's own steps vary around its mean?
  Consecutive probed steps are correlated, so the interval uses batch means: the series is cut
  into ``k`` consecutive batches of ``b`` steps with ``b = ceil(6 * tau)``, ``tau`` the
  integrated autocorrelation time (Sokal's adaptive window), at least 3 batches, and the
  interval is mean +- t(k-1) * sd(batch means) / sqrt(k). A moving-block bootstrap was tried
  first: at n = 90 it covers ~89% (independent steps) and ~84% (AR(1), phi 0.5); the batch-mean
  interval reaches 95% +- 3 points at phi 0.5 and 0.8 (tests/report/test_uncertainty.py).

Rates (shares in [0, 1], e.g. the conflict rate) get intervals that stay in [0, 1]:

* a run's own 0/1 step series (:func:`within_run_rate`): a Wilson score interval whose sample
  size is the effective one the batch means measure, n_eff = p(1 - p) / Var(mean) (at most
  n), with the t(k-1) quantile of the k batches. On 0/1 steps from a thresholded AR(1) at
  n = 90 it covers 95% +- 3 points at latent phi 0 and 0.5 and at phi 0.8 with p = 0.6; at
  phi 0.8 with p = 0.9 (few, long excursions) only ~87%;
* a setting's mean over seeds and differences of rates: the t interval clipped to [0, 1]
  (differences: [-1, 1]), and the text says it was clipped. Clipping never changes whether
  the interval holds the true rate, so its coverage is the t interval's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

BATCH_TAUS = 6  # batch length in integrated autocorrelation times
MIN_BATCHES = 3
SOKAL_WINDOW = 5  # Sokal's window: smallest M with M >= 5 tau(M)

WITHIN_RUN = "within-run (steps)"
PAIRED = "paired t"
WELCH = "Welch t"
SEED_T = "t across seeds"
NO_INTERVAL = "no between-run interval"
SINGLE = "single"


@dataclass(frozen=True)
class Estimate:
    """A number with a 95% interval ``[low, high]`` (NaN when there is none).

    ``method`` names the interval: :data:`WITHIN_RUN` (batch means over ``n`` steps, batches of
    ``block``), :data:`SEED_T` (one setting's mean over ``n`` seeds), :data:`PAIRED` /
    :data:`WELCH` (difference of two settings' seed means, ``n_a`` vs ``n_b`` seeds),
    :data:`NO_INTERVAL` (a difference with one run on a side) or :data:`SINGLE`.
    """

    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    method: str = SINGLE
    block: int = 0
    n_b: int = 0
    # said after the method in :meth:`how`, e.g. that the interval was clipped to [0, 1]
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)

    def short(self, fmt: str = "{:.3f}") -> str:
        """``value [low, high]`` (just the value when there is no interval)."""
        if math.isnan(self.value):
            return "n/a"
        if not self.has_interval:
            return fmt.format(self.value)
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"

    def sides(self, unit: str = "seeds") -> str:
        """``n = 5 vs 5 seeds`` for a comparison, ``n = 5 seeds`` / ``n = 90 steps`` otherwise;
        ``unit`` names what a side counts (analysed checkpoints: ``checkpoints``)."""
        if self.method in (PAIRED, WELCH, NO_INTERVAL):
            return f"n = {self.n} vs {self.n_b} {unit}"
        return f"n = {self.n} {'steps' if self.method == WITHIN_RUN else 'seeds'}"

    def _how(self, unit: str = "seeds") -> str:
        if self.method == NO_INTERVAL and unit != "seeds":
            return f"difference of the {unit}, {self.sides(unit)}: no between-run interval"
        if self.method == WITHIN_RUN and not self.has_interval:
            return (
                f"mean of n={self.n} probed steps: too few for a within-run interval (it "
                f"needs {2 * MIN_BATCHES})"
            )
        if self.method == WITHIN_RUN:
            return (
                f"95% within-run (steps) interval: batch means over n={self.n} probed steps "
                f"(batches of {self.block}); says how this run's steps vary, not other seeds"
            )
        if self.method == SEED_T:
            return f"95% t interval across n={self.n} seeds"
        if self.method in (PAIRED, WELCH):
            pair = "paired by seed" if self.method == PAIRED else "Welch, seeds unmatched"
            return f"95% {self.method} interval of the seed means ({pair}, {self.sides()})"
        if self.method == NO_INTERVAL:
            return (
                f"difference of seed means, {self.sides()}: one run on a side, so there is no "
                "between-run interval (run more seeds to get one)"
            )
        return f"one value (n={self.n}), no interval"

    def how(self, unit: str = "seeds") -> str:
        """How the interval was obtained, with n, in words (and its note, if any); ``unit``
        names what a comparison's sides count (analysed checkpoints: ``checkpoints``)."""
        base = self._how(unit)
        return f"{base}; {self.note}" if self.note else base

    def text(self, fmt: str = "{:.3f}", unit: str = "seeds") -> str:
        """``value [low, high] (how, n)``."""
        if math.isnan(self.value):
            return "n/a"
        return f"{self.short(fmt)} ({self.how(unit)})"

    def verdict(self, fmt: str = "{:+.3f}") -> str:
        """The difference in words that follow the numbers (no sign without evidence)."""
        if math.isnan(self.value):
            return "n/a"
        if not self.has_interval:
            return f"{fmt.format(self.value)} (no interval: {self.sides()})"
        if self.low <= 0 <= self.high:
            return f"no detectable difference ({self.short(fmt)}, CI includes 0, {self.sides()})"
        word = "higher" if self.value > 0 else "lower"
        return f"{word} by {self.short(fmt)} (95% CI excludes 0, {self.sides()})"


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def autocorrelation_time(values) -> float:
    """Integrated autocorrelation time 1 + 2 sum_k rho(k), Sokal's adaptive window (>= 1)."""
    x = _finite(values)
    n = x.size
    if n < 4 or x.std() == 0:
        return 1.0
    xc = x - x.mean()
    f = np.fft.rfft(xc, 2 * n)
    acov = np.fft.irfft(f * np.conj(f))[:n]
    rho = acov / acov[0]
    taus = 2 * np.cumsum(rho) - 1
    ok = np.arange(n) >= SOKAL_WINDOW * taus
    m = int(ok.argmax()) if ok.any() else n - 1
    return float(max(taus[m], 1.0))


def _batches(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``(k batch means, batch length b)`` of the last ``k * b`` steps, b = ceil(6 tau)."""
    n = x.size
    b = min(max(math.ceil(BATCH_TAUS * autocorrelation_time(x)), 1), n // MIN_BATCHES)
    k = n // b
    return x[n - k * b :].reshape(k, b).mean(axis=1), b


def within_run(values, bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean of one run's step series (NaN dropped, order kept), 95% within-run interval.

    ``bounds``: the range the quantity cannot leave (a share: ``(0, 1)``); the interval is
    clipped to it, and the estimate's note says so when it was.
    """
    x = _finite(values)
    if x.size == 0:
        return Estimate(math.nan)
    if x.size < 2 * MIN_BATCHES:  # too few steps for batches: the mean, no interval
        return Estimate(float(x.mean()), n=int(x.size), method=WITHIN_RUN)
    batches, b = _batches(x)
    k = batches.size
    half = stats.t.ppf(0.975, k - 1) * batches.std(ddof=1) / math.sqrt(k)
    m = float(x.mean())
    return _clipped(Estimate(m, m - half, m + half, int(x.size), WITHIN_RUN, b), bounds)


def within_run_rate(values) -> Estimate:
    """Share of one run's steps where a 0/1 series is 1 (NaN dropped), in [0, 1].

    A Wilson score interval at the effective sample size the batch means measure:
    ``n_eff = p (1 - p) / Var(mean)`` with ``Var(mean) = sd(batch means)^2 / k``, at most n
    (no more than n independent steps), and the t(k-1) quantile. With p = 0 or 1, or equal
    batches, n_eff = n. Coverage: module docstring.
    """
    x = _finite(values)
    if x.size == 0:
        return Estimate(math.nan)
    n, p = int(x.size), float(x.mean())
    if n < 2 * MIN_BATCHES:
        return Estimate(p, n=n, method=WITHIN_RUN)
    batches, b = _batches(x)
    k = batches.size
    var = batches.var(ddof=1) / k
    n_eff = float(n) if var == 0 or p * (1 - p) == 0 else min(float(n), p * (1 - p) / var)
    z = stats.t.ppf(0.975, k - 1)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    # the score interval holds p; min/max only undo rounding at p = 0 or 1
    low, high = max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))
    note = f"Wilson score interval at the batch means' effective n = {n_eff:.0f} steps (in [0, 1])"
    return Estimate(p, float(low), float(high), n, WITHIN_RUN, b, note=note)


def _clipped(est: Estimate, bounds: tuple[float, float] | None) -> Estimate:
    """``est`` with its interval clipped to ``bounds`` (noted when a side moved)."""
    if bounds is None or not est.has_interval:
        return est
    lo, hi = bounds
    if est.low >= lo and est.high <= hi:
        return est
    note = f"interval clipped to [{lo:g}, {hi:g}], the range a share can take"
    return dataclasses.replace(est, low=max(est.low, lo), high=min(est.high, hi), note=note)


def across_seeds(values, bounds: tuple[float, float] | None = None) -> Estimate:
    """One setting's mean over seeds with a 95% t interval (t(n-1)); NaN seeds dropped.

    ``bounds``: clip the interval to this range (a share: ``(0, 1)``), noted when it did.
    """
    x = _finite(values)
    if x.size == 0:
        return Estimate(math.nan)
    m = float(x.mean())
    if x.size == 1:
        return Estimate(m, n=1)
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return _clipped(Estimate(m, m - half, m + half, int(x.size), SEED_T), bounds)


def compare(
    a: Mapping[object, float],
    b: Mapping[object, float],
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """Seed mean of ``a`` minus seed mean of ``b``; each maps seed -> that run's value.

    Paired t when both sides have the same seeds (at least 2), Welch's t when both have at
    least 2 runs, otherwise no interval (``method`` :data:`NO_INTERVAL`). ``bounds``: clip
    the interval to this range (a difference of shares: ``(-1, 1)``), noted when it did.
    """
    return _clipped(_compare(a, b), bounds)


def _compare(a: Mapping[object, float], b: Mapping[object, float]) -> Estimate:
    fa = {s: float(v) for s, v in a.items() if math.isfinite(float(v))}
    fb = {s: float(v) for s, v in b.items() if math.isfinite(float(v))}
    na, nb = len(fa), len(fb)
    if na == 0 or nb == 0:
        return Estimate(math.nan, n=na, n_b=nb, method=NO_INTERVAL)
    xa, xb = np.array(list(fa.values())), np.array(list(fb.values()))
    d = float(xa.mean() - xb.mean())
    if set(fa) == set(fb) and na >= 2:
        diffs = np.array([fa[s] - fb[s] for s in fa])
        half = stats.t.ppf(0.975, na - 1) * diffs.std(ddof=1) / math.sqrt(na)
        return Estimate(d, d - half, d + half, na, PAIRED, n_b=nb)
    if na >= 2 and nb >= 2:
        va, vb = xa.var(ddof=1) / na, xb.var(ddof=1) / nb
        se2 = va + vb
        if se2 == 0:
            return Estimate(d, d, d, na, WELCH, n_b=nb)
        df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        half = stats.t.ppf(0.975, df) * math.sqrt(se2)
        return Estimate(d, d - half, d + half, na, WELCH, n_b=nb)
    return Estimate(d, n=na, method=NO_INTERVAL, n_b=nb)
