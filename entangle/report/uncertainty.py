"""Uncertainty of report numbers: across seeds, or a moving-block bootstrap over steps.

Consecutive probed steps are correlated (the weights move slowly), so resampling single
steps would understate the spread; the moving-block bootstrap (Kuensch 1989) resamples
overlapping blocks of ``L`` consecutive steps, L = ceil(n^(1/3)) by default (at least 2).
See docs/calibration.md ("uncertainty") for how the verdict uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A number with its uncertainty: ``value`` and a 95% interval ``[low, high]``.

    ``method`` is ``"bootstrap"`` (moving-block over ``n`` steps, blocks of ``block``),
    ``"seeds"`` (mean over ``n`` seeds, interval mean +- 1.96 standard errors) or ``"single"``
    (one number, no interval).
    """

    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    method: str = "single"
    block: int = 0

    def short(self, fmt: str = "{:.3f}") -> str:
        """``value [low, high]`` (just the value when there is no interval)."""
        if math.isnan(self.value):
            return "n/a"
        if self.method == "single" or math.isnan(self.low):
            return fmt.format(self.value)
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"

    def how(self) -> str:
        """How the interval was obtained, with n."""
        if self.method == "bootstrap":
            return f"95% moving-block bootstrap over n={self.n} probed steps (block {self.block})"
        if self.method == "seeds":
            return f"95% interval across n={self.n} seeds"
        return f"one value (n={self.n}), no interval"

    def text(self, fmt: str = "{:.3f}") -> str:
        """``value [low, high] (how, n)``."""
        if math.isnan(self.value):
            return "n/a"
        return f"{self.short(fmt)} ({self.how()})"


def block_length(n: int) -> int:
    """Default moving-block length ceil(n^(1/3)), at least 2 (1 for n < 4)."""
    return 1 if n < 4 else max(2, math.ceil(n ** (1 / 3)))


def _resample_means(x: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    n = x.size
    starts_max = n - block + 1
    k = math.ceil(n / block)
    starts = rng.integers(0, starts_max, size=(RESAMPLES, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(RESAMPLES, -1)[:, :n]
    return x[idx].mean(axis=1)


def block_bootstrap(values, *, block: int | None = None, seed: int = 0) -> Estimate:
    """Mean of ``values`` (NaN dropped, order kept) with a moving-block bootstrap 95% interval."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Estimate(math.nan)
    if x.size == 1:
        return Estimate(float(x[0]), n=1)
    b = block or block_length(x.size)
    means = _resample_means(x, min(b, x.size), np.random.default_rng(seed))
    lo, hi = np.quantile(means, [0.025, 0.975])
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size), "bootstrap", b)


def bootstrap_difference(a, b, *, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) for two independent step series, each block-resampled."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
    if xa.size < 2 or xb.size < 2:
        value = xa.mean() - xb.mean() if xa.size and xb.size else math.nan
        return Estimate(float(value), n=int(min(xa.size, xb.size)))
    rng = np.random.default_rng(seed)
    ba, bb = block_length(xa.size), block_length(xb.size)
    diff = _resample_means(xa, ba, rng) - _resample_means(xb, bb, rng)
    lo, hi = np.quantile(diff, [0.025, 0.975])
    n = int(min(xa.size, xb.size))
    return Estimate(float(xa.mean() - xb.mean()), float(lo), float(hi), n, "bootstrap", ba)


def across_seeds(values: Sequence[float]) -> Estimate:
    """Mean over seeds with mean +- 1.96 standard errors (NaN seeds dropped)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return Estimate(math.nan)
    if x.size == 1:
        return Estimate(float(x[0]), n=1)
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    m = float(x.mean())
    return Estimate(m, m - 1.96 * se, m + 1.96 * se, int(x.size), "seeds")


def seeds_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Difference of seed means, interval from both standard errors."""
    ea, eb = across_seeds(a), across_seeds(b)
    if ea.method != "seeds" or eb.method != "seeds":
        return Estimate(ea.value - eb.value, n=min(ea.n, eb.n))
    se = math.sqrt(((ea.high - ea.value) / 1.96) ** 2 + ((eb.high - eb.value) / 1.96) ** 2)
    d = ea.value - eb.value
    return Estimate(d, d - 1.96 * se, d + 1.96 * se, min(ea.n, eb.n), "seeds")
