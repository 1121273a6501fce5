"""Epoch evaluation uses the run's SOC dimension and aperture, checked against metrics."""

from __future__ import annotations

import pytest
import torch

from entangle.gcd.evaluate import embed_all, evaluate
from entangle.gcd.train import TrainConfig, prepare
from entangle.metrics import conceptor, conceptor_spectrum, soc

CONFIG = TrainConfig(data="synthetic", pretrain_epochs=0, device="cpu")


@pytest.fixture(scope="module")
def setup():
    return prepare(CONFIG)


@pytest.mark.parametrize(("k", "aperture"), [(3, 0.5), (8, 4.0)])
def test_epoch_soc_and_energy_use_the_runs_k_and_aperture(setup, k, aperture):
    data = setup.data
    record, _ = evaluate(setup.backbone, setup.head, data, "cpu", k=k, aperture=aperture)
    z, _ = embed_all(setup.backbone, None, data, "cpu")
    old, new = z[data.labeled], z[data.novel & ~data.labeled]
    # before: always k=16 and aperture 2.0 whatever the run's soc_k / aperture
    assert record["k"] == k and len(record["principal_angles"]) == k
    assert record["soc"] == pytest.approx(float(soc(old, new, k)), rel=1e-5)
    quota = conceptor_spectrum(conceptor(old, aperture))["quota"]
    assert record["conceptor"]["quota"] == pytest.approx(quota, rel=1e-5)
    assert record["conceptor"]["aperture"] == aperture


def test_defaults_are_the_papers(setup):
    record, _ = evaluate(setup.backbone, setup.head, setup.data, "cpu")
    assert record["k"] == 16 and record["conceptor"]["aperture"] == 2.0
    assert torch.isfinite(torch.tensor(record["soc"]))
