"""entangle.gcd.calibrate: the run's aperture resolved and EEP diagnosed on planted features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from entangle.data.gcd_data import GCDData
from entangle.gcd.calibrate import (
    resolve_run_aperture,
    start_calibration,
    unlabeled_reference_features,
)
from entangle.gcd.config import TrainConfig
from entangle.metrics.calibration import auto_aperture, calibration_record, jaeger_aperture

CONFIG = TrainConfig(data="synthetic", epochs=1, device="cpu", eep_weight=0.5)


def _data(n: int = 60, d: int = 6) -> GCDData:
    """Old classes live in the first 3 coordinates, novel ones in the last 3."""
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(n) % 4
    novel = labels >= 2
    x = torch.randn(n, d, generator=g) * 0.1
    x[~novel, :3] += torch.randn(int((~novel).sum()), 3, generator=g)
    x[novel, 3:] += torch.randn(int(novel.sum()), 3, generator=g)
    labeled = ~novel & (torch.arange(n) % 8 < 4)
    return GCDData(x, labels, labeled, novel, [0, 1], list("abcd"), "vector")


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        return x * self.w


def test_unlabeled_reference_features_are_every_unlabeled_row_in_batches():
    data = _data()
    z = unlabeled_reference_features(data, _Scale(), batch_size=7)
    torch.testing.assert_close(z, data.x[~data.labeled] * 3)


def test_a_number_or_jaeger_is_resolved_without_an_extra_pass():
    data, model = _data(), _Scale()
    labeled = data.x[data.labeled]
    assert resolve_run_aperture(CONFIG, data, labeled, model) == (2.0, None)
    jaeger = dataclasses.replace(CONFIG, aperture="jaeger")
    assert resolve_run_aperture(jaeger, data, labeled, model) == (jaeger_aperture(labeled), None)


def test_auto_compares_with_every_unlabeled_training_row():
    data, model = _data(), _Scale()
    labeled = data.x[data.labeled] * 3
    config = dataclasses.replace(CONFIG, aperture="auto")
    aperture, auto = resolve_run_aperture(config, data, labeled, model)
    assert aperture == auto == pytest.approx(auto_aperture(labeled, data.x[~data.labeled] * 3))


def test_start_calibration_on_the_probe_set_for_a_baseline():
    data, model = _data(), _Scale()
    subset = torch.arange(0, 60, 2)
    record = start_calibration(CONFIG, data, subset, model)
    z = data.x[subset] * 3
    lab, nov = data.labeled[subset], data.novel[subset]
    expected = calibration_record(z[lab], z[~lab], aperture=2.0, beta=0.5, novel=nov[~lab])
    assert (
        record
        == {
            "requested": 2.0,
            "source": "starting backbone, labeled rows of the probe set",
            "auto_unlabeled": "probe set",
        }
        | expected
    )
    # the planted split: old-class energy well above the novel rows'
    assert record["at_aperture"]["gap_new"] > 0.3


def test_start_calibration_with_the_references_features_and_resolved_aperture():
    data, model = _data(), _Scale()
    subset = torch.arange(60)
    reference_labeled = data.x[data.labeled] * 3
    record = start_calibration(
        CONFIG, data, subset, model, labeled_features=reference_labeled, aperture=(1.5, 1.25)
    )
    assert record["source"] == "reference model, labeled training set"
    assert record["auto_unlabeled"] == "unlabeled training rows"
    assert (record["aperture"], record["auto_aperture"]) == (1.5, 1.25)
    assert record["n_labeled"] == int(data.labeled.sum())
    assert record["n_unlabeled"] == int((~data.labeled).sum())
