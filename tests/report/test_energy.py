"""Report energies agree with a direct numpy computation of the conceptor formulas."""

from __future__ import annotations

import numpy as np
import pytest

from entangle.report.energy import aperture_of, epoch_energy
from entangle.report.figures import smooth


def test_epoch_energy_matches_numpy_conceptor():
    rng = np.random.default_rng(0)
    n, d, a = 80, 6, 1.5
    z = rng.normal(size=(n, d)) * np.array([3, 2, 1, 0.1, 0.1, 0.1])
    labeled = np.arange(n) < 30
    novel = np.arange(n) >= 55
    logits = rng.normal(size=(n, 4))
    e = epoch_energy(
        {"features": z, "labeled": labeled, "novel": novel, "logits": logits}, 3, aperture=a
    )
    zl = z[labeled]
    r = zl.T @ zl / zl.shape[0]
    c = r @ np.linalg.inv(r + a**-2 * np.eye(d))
    ratio = np.clip(np.einsum("nd,de,ne->n", z, c, z) / (z**2).sum(1), 0, 1)
    np.testing.assert_allclose(e.ratio["labeled"], ratio[labeled], atol=1e-5)
    np.testing.assert_allclose(e.ratio["unlabeled_new"], ratio[novel], atol=1e-5)
    np.testing.assert_allclose(e.ratio["unlabeled_old"], ratio[~labeled & ~novel], atol=1e-5)
    free = -np.log(np.exp(logits).sum(1))
    np.testing.assert_allclose(e.free["unlabeled_new"], free[novel], atol=1e-5)
    np.testing.assert_allclose(np.sort(e.eigenvalues), np.sort(np.linalg.eigvalsh(c)), atol=1e-5)
    assert e.quota == pytest.approx(np.trace(c) / d, abs=1e-6) and e.note == ""


def test_near_identity_conceptor_is_flagged_and_missing_labels_explained():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 4)) * 10
    flags = {"labeled": np.ones(50, bool), "novel": np.zeros(50, bool)}
    assert "close to the identity" in epoch_energy({"features": z, **flags}, 0, 2.0).note
    none = epoch_energy(
        {"features": z, "labeled": np.zeros(50, bool), "novel": flags["novel"]}, 0, 2.0
    )
    assert "no labeled rows" in none.note and none.ratio == {} and none.free == {}


def test_aperture_from_config():
    assert aperture_of({"aperture": 1.0}) == 1.0
    assert aperture_of({"eagc": {"aperture": 3}}) == 3.0
    assert aperture_of({"eagc": True}) == 2.0 and aperture_of(None) == 2.0


def test_smooth_is_a_nan_aware_centred_mean():
    x = np.array([1.0, np.nan, 3.0, 5.0, np.nan, np.nan, np.nan, 8.0])
    got = smooth(x, window=3)
    want = [np.nanmean(x[max(0, i - 1) : i + 2]) if np.isfinite(x[max(0, i - 1) : i + 2]).any()
            else np.nan for i in range(x.size)]  # fmt: skip
    np.testing.assert_allclose(got, want)


def test_free_energy_uses_the_classifiers_softmax_temperature():
    from types import SimpleNamespace

    from entangle.report.energy import logit_temperature_of
    from entangle.report.plot_energy import energy_figure

    rng = np.random.default_rng(2)
    cosine = np.clip(rng.normal(size=(40, 5)) * 0.3, -1, 1)  # SimGCD's head: cosine logits
    flags = {"labeled": np.arange(40) < 15, "novel": np.arange(40) >= 30}
    e = epoch_energy({"features": rng.normal(size=(40, 4)), **flags, "logits": cosine}, 0, 2.0, 0.1)
    # the softmax SimGCD trains is over cosine / 0.1 (CVMI-Lab/SimGCD train.py, DistillLoss)
    want = -np.log(np.exp(cosine / 0.1).sum(1))
    np.testing.assert_allclose(e.free["labeled"], want[flags["labeled"]], rtol=1e-5)
    assert logit_temperature_of({"student_temperature": 0.1}) == 0.1
    assert logit_temperature_of({"loss": {"student_temperature": 0.2}}) == 0.2
    assert logit_temperature_of({}) == 1.0
    fig = energy_figure([SimpleNamespace(name="run")], {"run": [e]}, "free")
    label = fig.axes[0].get_xlabel().splitlines()
    assert label[0] == "free energy -logsumexp(logits / 0.1)"
    lo, hi = float(want.min()), float(want.max())
    assert label[1] == f"(axis fitted to the data: {lo:.3g} to {hi:.3g})"


def test_non_finite_rows_are_left_out_of_the_conceptor_and_named():
    """A run trained with --on-nan continue saved NaN rows: eigh raised LinAlgError (issue 19)."""
    rng = np.random.default_rng(2)
    n, d = 60, 5
    z = rng.normal(size=(n, d)) * np.array([3, 2, 1, 0.5, 0.1])
    labeled, novel = np.arange(n) < 25, np.arange(n) >= 45
    bad = z.copy()
    bad[[0, 3, 50]] = np.nan  # two labeled rows and one novel row
    bad[7, 2] = np.inf
    e = epoch_energy({"features": bad, "labeled": labeled, "novel": novel}, 1, 2.0)
    keep = np.isfinite(bad).all(1)
    clean = epoch_energy(
        {"features": z[keep], "labeled": labeled[keep], "novel": novel[keep]}, 1, 2.0
    )
    np.testing.assert_allclose(e.eigenvalues, clean.eigenvalues, atol=1e-6)
    for group in clean.ratio:
        np.testing.assert_allclose(e.ratio[group], clean.ratio[group], atol=1e-6)
    assert "4 rows with non-finite features left out" in e.note
    every = epoch_energy(
        {"features": np.full((n, d), np.nan), "labeled": labeled, "novel": novel}, 1, 2.0
    )
    assert "non-finite" in every.note and every.eigenvalues is None and every.ratio == {}
