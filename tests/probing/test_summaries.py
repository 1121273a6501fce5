"""Device-side summaries: masked statistics against numpy, empty groups NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entangle.probing.summaries import conflict_summary, masked_summary, to_host


def test_masked_summary_equals_numpy():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(50, generator=g, dtype=torch.float64)
    values[3] = float("nan")
    mask = torch.rand(50, generator=g) > 0.4
    got = to_host(masked_summary(values, mask))
    x = values[mask].numpy()
    x = x[~np.isnan(x)]
    assert got["n"] == x.size
    assert got["mean"] == pytest.approx(x.mean())
    assert got["std"] == pytest.approx(x.std())
    assert got["q25"] == pytest.approx(np.quantile(x, 0.25), rel=1e-6)


def test_empty_group_gives_nan_statistics():
    values = torch.arange(4.0)
    got = to_host(masked_summary(values, torch.zeros(4, dtype=torch.bool)))
    assert got["n"] == 0
    # before: std was 0.0 for an empty group while the docstring promised NaN
    for key in ("mean", "std", "q10", "q50", "q90"):
        assert math.isnan(got[key]), key
    conflict = to_host(conflict_summary(values, torch.zeros(4, dtype=torch.bool)))
    assert math.isnan(conflict["cos_mean"]) and math.isnan(conflict["conflict_frac"])
