"""The conceptor of a run's step energies: EEP's for EAGC runs, the start's for baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from entangle.data.datasets import eval_inputs
from entangle.gcd.train import TrainConfig, prepare, train
from entangle.nn.features import reference_features
from entangle.runs.directory import RunReader

TINY = TrainConfig(
    data="synthetic",
    epochs=1,
    batch_size=64,
    pretrain_epochs=0,
    reference_epochs=1,
    probeset_size=200,
    soc_k=4,
    device="cpu",
    save_features=False,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    setup = prepare(TINY)
    root = tmp_path_factory.mktemp("conceptors")
    train(TINY, root / "baseline", setup)
    train(dataclasses.replace(TINY, eagc=True), root / "eagc", setup)
    return setup, RunReader(root / "baseline"), RunReader(root / "eagc")


def _numpy_conceptor(z: np.ndarray, aperture: float) -> np.ndarray:
    r = z.T @ z / z.shape[0]
    return r @ np.linalg.inv(r + aperture**-2 * np.eye(z.shape[1]))


def test_baseline_gets_energies_under_its_starting_models_conceptor(runs):
    setup, baseline, _ = runs
    entry = baseline.meta["conceptor"]
    assert entry["name"] == "known_subspace" and "starting model" in entry["source"]
    # before: a baseline recorded no energy ratios at all; now under a fixed conceptor of
    # the starting weights' labeled features, checked here with numpy
    rows = torch.nonzero(setup.data.labeled).flatten()
    z = reference_features(setup.backbone, [eval_inputs(setup.data, rows)]).double().numpy()
    c = _numpy_conceptor(z, entry["aperture"])
    want = np.sort(np.linalg.eigvalsh(c))[::-1]
    np.testing.assert_allclose(entry["eigenvalues"], want, atol=1e-5)
    assert entry["quota"] == pytest.approx(np.trace(c) / c.shape[0], abs=1e-6)
    energy = baseline.steps[0]["energy"]
    assert energy["conceptor"] == "known_subspace" and 0 < energy["ratio"]["labeled"]["mean"] <= 1


def test_eagc_run_records_eeps_own_conceptor(runs):
    _, _, eagc = runs
    entry = eagc.meta["conceptor"]
    assert entry["name"] == "eep" and "reference model" in entry["source"]
    state = torch.load(eagc.path / "checkpoints" / "last.pt", weights_only=True)
    c = state["eagc"]["conceptor"].double().numpy()
    np.testing.assert_allclose(
        entry["eigenvalues"], np.sort(np.linalg.eigvalsh(c))[::-1], atol=1e-6
    )
    assert all(s["energy"]["conceptor"] == "eep" for s in eagc.steps)
    # the probe set names its own, refitted conceptor
    probeset = next(s["probeset"] for s in eagc.steps if "probeset" in s)
    assert "refit" in probeset["conceptor"]["source"]
