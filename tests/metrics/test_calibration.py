"""Calibration: Jaeger's criterion against finite differences; planted features; inert diagnosis."""

from __future__ import annotations

import math

import pytest
import torch

from entangle import EAGC
from entangle.errors import EntangleValueError
from entangle.metrics import conceptor
from entangle.metrics.calibration import (
    aperture_sensitivity,
    auto_aperture,
    calibration_record,
    correlation_eigenvalues,
    eep_diagnosis,
)


def planted(noise: float, seed: int = 0, dim: int = 32, k: int = 4):
    """Known classes 0-3 on axes 0..k-1, novel classes 4-7 on axes orthogonal to them."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(8, dim, dtype=torch.float64)
    for c in range(4):
        means[c, c] = 3.0
        means[c + 4, k + c] = 3.0
    y = torch.arange(8).repeat_interleave(60)
    z = means[y] + noise * torch.randn(y.numel(), dim, generator=g, dtype=torch.float64)
    labeled = (y < 4) & (torch.arange(y.numel()) % 2 == 0)
    return z, y, labeled


def test_sensitivity_matches_finite_difference_of_frobenius_norm():
    z, _, labeled = planted(0.1)
    s = correlation_eigenvalues(z[labeled])
    for a in (0.3, 2.0, 11.0):
        h = 1e-5
        norm = [conceptor(z[labeled], a * math.exp(d)).pow(2).sum() for d in (h, -h)]
        fd = float(norm[0] - norm[1]) / (2 * h)
        got = float(aperture_sensitivity(s, torch.tensor([a]))[0])
        assert got == pytest.approx(fd, rel=1e-5)


def test_auto_is_the_maximiser_on_a_single_eigenvalue():
    # one eigenvalue s: 4 g^2 (1 - g) peaks at g = 2/3, i.e. a^-2 = s / 2
    z = torch.zeros(10, 3, dtype=torch.float64)
    z[:, 0] = 2.0  # s = 4
    assert auto_aperture(z) == pytest.approx(math.sqrt(2 / 4), rel=1e-2)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_planted_orthogonal_novel_classes_give_a_large_gap(noise):
    z, y, labeled = planted(noise)
    unl = ~labeled
    novel = y[unl] >= 4
    a = auto_aperture(z[labeled])
    d = eep_diagnosis(z[labeled], z[unl], aperture=a, beta=0.5, novel=novel)
    assert d["gap_new"] > 0.25
    assert d["share_active_new"] > 0.95  # EEP acts on every novel row
    assert not d["inert"]
    eagc = EAGC.from_features(z[labeled].float(), aperture="auto")
    assert eagc.aperture == pytest.approx(a)


def test_isotropic_features_are_diagnosed_inert():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(600, 32, generator=g, dtype=torch.float64)
    labeled = torch.arange(600) < 300
    record = calibration_record(z[labeled], z[~labeled], aperture=2.0)
    assert record["at_aperture"]["inert"] and record["at_auto"]["inert"]
    assert abs(record["at_aperture"]["gap"]) < 0.05


def test_bad_aperture_string_is_refused():
    z, _, labeled = planted(0.1)
    with pytest.raises(EntangleValueError, match="'auto'"):
        EAGC.from_features(z[labeled], aperture="big")
    assert EAGC.from_features(z[labeled], aperture="2.0").aperture == 2.0
