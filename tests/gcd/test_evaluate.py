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


def test_done_summary_headlines_the_first_200_steps(tmp_path):
    import numpy as np

    from entangle.gcd.evaluate import run_summary
    from entangle.runs.directory import RunReader, RunWriter

    rng = np.random.default_rng(0)
    gdc = rng.uniform(0, 1, 300)
    soc_steps = list(range(0, 300, 50))
    with RunWriter(tmp_path / "r") as run:
        for step in range(300):
            record = {"step": step, "raw": {"last_block": {"gdc": gdc[step], "cos": -0.1}}}
            if step in soc_steps:
                record["probeset"] = {"soc": step / 1000}
            run.write_step(record)
        run.write_epoch({"epoch": 0, "acc_all": 0.5, "soc": 0.9})
    summary = run_summary(RunReader(tmp_path / "r"))
    assert summary["early_steps"] == 200
    assert summary["gdc_early"] == pytest.approx(gdc[:200].mean())
    assert summary["gdc_mean"] == pytest.approx(gdc.mean())
    assert summary["soc_early"] == pytest.approx(np.mean([s / 1000 for s in soc_steps if s < 200]))
    assert summary["soc_all"] == pytest.approx(np.mean([s / 1000 for s in soc_steps]))
    assert summary["soc"] == 0.9  # the last epoch's, over all samples
