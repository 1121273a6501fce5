"""Uncertainty: block bootstrap widens for correlated steps; seeds give mean +- 1.96 SE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entangle.report.uncertainty import (
    across_seeds,
    block_bootstrap,
    block_length,
    bootstrap_difference,
    seeds_difference,
)


def test_iid_interval_matches_the_normal_approximation():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    est = block_bootstrap(x, block=1)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert est.value == pytest.approx(x.mean())
    assert est.high - est.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert est.n == 400 and est.method == "bootstrap"


def test_blocks_widen_the_interval_of_a_correlated_series():
    rng = np.random.default_rng(1)
    x = np.zeros(500)
    for t in range(1, x.size):
        x[t] = 0.9 * x[t - 1] + rng.normal()
    single = block_bootstrap(x, block=1)
    blocks = block_bootstrap(x)
    assert blocks.block == block_length(500) == 8
    assert blocks.high - blocks.low > 1.5 * (single.high - single.low)


def test_nan_steps_are_dropped_and_counted_out():
    est = block_bootstrap([1.0, np.nan, 3.0, np.nan, 2.0, 2.0])
    assert est.n == 4 and est.value == pytest.approx(2.0)
    assert math.isnan(block_bootstrap([np.nan]).value)


def test_seeds_interval_by_hand():
    vals = [0.2, 0.4, 0.3]
    est = across_seeds(vals)
    se = np.std(vals, ddof=1) / math.sqrt(3)
    assert (est.value, est.low, est.high) == pytest.approx((0.3, 0.3 - 1.96 * se, 0.3 + 1.96 * se))
    assert est.method == "seeds" and est.n == 3
    diff = seeds_difference([1.0, 1.2], [0.0, 0.2])
    assert diff.value == pytest.approx(1.0)
    assert diff.high - diff.value == pytest.approx(1.96 * math.sqrt(2 * 0.02 / 2))


def test_difference_of_two_series_covers_the_true_shift():
    rng = np.random.default_rng(2)
    d = bootstrap_difference(rng.normal(0.5, 1, 300), rng.normal(0.0, 1, 300))
    assert d.low < 0.5 < d.high and d.low > 0
