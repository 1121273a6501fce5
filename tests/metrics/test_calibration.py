"""Calibration: both aperture criteria against direct computations; planted features; inertness."""

from __future__ import annotations

import math

import pytest
import torch

from entangle import EAGC
from entangle.errors import EntangleValueError
from entangle.metrics import conceptor, energy_ratio
from entangle.metrics.calibration import (
    aperture_sensitivity,
    auto_aperture,
    calibration_record,
    correlation_eigenvalues,
    eep_diagnosis,
    energy_gap,
    jaeger_aperture,
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


def test_jaeger_is_the_maximiser_on_a_single_eigenvalue():
    # one eigenvalue s: 4 g^2 (1 - g) peaks at g = 2/3, i.e. a^-2 = s / 2
    z = torch.zeros(10, 3, dtype=torch.float64)
    z[:, 0] = 2.0  # s = 4
    assert jaeger_aperture(z) == pytest.approx(math.sqrt(2 / 4), rel=1e-2)


def planted48(noise: float = 0.05, seed: int = 0, k: int = 6):
    """The issue's case: k old classes on axes 0..k-1 of R^48, k novel on axes k..2k-1."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(2 * k, 48, dtype=torch.float64)
    for c in range(k):
        means[c, c] = 3.0
        means[c + k, k + c] = 3.0
    y = torch.arange(2 * k).repeat_interleave(60)
    z = means[y] + noise * torch.randn(y.numel(), 48, generator=g, dtype=torch.float64)
    labeled = (y < k) & (torch.arange(y.numel()) % 2 == 0)
    return z, y >= k, labeled


def _old_novel_gap(z, novel, labeled, aperture):
    e = energy_ratio(z, conceptor(z[labeled], aperture))
    return float(e[~labeled & ~novel].mean() - e[novel].mean())


def test_energy_gap_equals_the_direct_difference_of_mean_energies():
    z, _, labeled = planted48(0.3, seed=2)
    apertures = torch.tensor([0.1, 0.7, 2.0, 9.0], dtype=torch.float64)
    got = energy_gap(z[labeled], z[~labeled], apertures)
    for a, value in zip(apertures.tolist(), got.tolist(), strict=True):
        c = conceptor(z[labeled], a)
        direct = energy_ratio(z[labeled], c).mean() - energy_ratio(z[~labeled], c).mean()
        assert value == pytest.approx(float(direct), abs=1e-12)


def test_auto_maximises_the_gap_over_a_dense_scan():
    z, _, labeled = planted48(0.3, seed=3)
    a = auto_aperture(z[labeled], z[~labeled])
    scan = torch.logspace(-2, 3, 2001, dtype=torch.float64)
    best = float(energy_gap(z[labeled], z[~labeled], scan).max())
    at_a = float(energy_gap(z[labeled], z[~labeled], torch.tensor([a]))[0])
    assert at_a >= best - 1e-4


def test_planted_case_auto_separates_old_from_novel_where_jaeger_does_not():
    z, novel, labeled = planted48()
    auto = auto_aperture(z[labeled], z[~labeled])  # never sees `novel`
    jaeger = jaeger_aperture(z[labeled])
    # numbers of docs/calibration.md's planted table
    assert auto == pytest.approx(4.17, rel=0.02) and jaeger == pytest.approx(30.8, rel=0.02)
    assert _old_novel_gap(z, novel, labeled, auto) >= 0.8
    assert _old_novel_gap(z, novel, labeled, jaeger) < 0.4
    d = eep_diagnosis(z[labeled], z[~labeled], aperture=auto, beta=0.5, novel=novel[~labeled])
    assert d["share_active_new"] > 0.95 and not d["inert"]
    eagc = EAGC.from_features(z[labeled], aperture="auto", unlabeled=z[~labeled])
    assert eagc.aperture == pytest.approx(auto)
    assert EAGC.from_features(z[labeled], aperture="jaeger").aperture == pytest.approx(jaeger)


def test_auto_without_unlabeled_features_is_refused_with_the_alternatives():
    z, _, labeled = planted48()
    with pytest.raises(EntangleValueError, match="unlabeled=.*'jaeger'"):
        EAGC.from_features(z[labeled], aperture="auto")


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_planted_orthogonal_novel_classes_give_a_large_gap(noise):
    z, y, labeled = planted(noise)
    unl = ~labeled
    novel = y[unl] >= 4
    a = auto_aperture(z[labeled], z[unl])
    d = eep_diagnosis(z[labeled], z[unl], aperture=a, beta=0.5, novel=novel)
    assert d["gap_new"] > 0.8
    assert d["share_active_new"] > 0.95  # EEP acts on every novel row
    assert not d["inert"]


def test_isotropic_features_are_diagnosed_inert():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(600, 32, generator=g, dtype=torch.float64)
    labeled = torch.arange(600) < 300
    record = calibration_record(z[labeled], z[~labeled], aperture=2.0)
    assert record["at_aperture"]["inert"] and record["at_auto"]["inert"]
    assert abs(record["at_aperture"]["gap"]) < 0.05


def test_bad_aperture_string_is_refused():
    z, _, labeled = planted(0.1)
    with pytest.raises(EntangleValueError, match="'auto' or 'jaeger'"):
        EAGC.from_features(z[labeled], aperture="big")
    assert EAGC.from_features(z[labeled], aperture="2.0").aperture == 2.0
