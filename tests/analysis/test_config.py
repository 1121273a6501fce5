"""analyze's settings: defaults from their one home, bad values refused, the objective built."""

from __future__ import annotations

import dataclasses

import pytest

from entangle import defaults
from entangle.analysis.config import AnalyzeConfig
from entangle.errors import EntangleValueError
from entangle.gcd.losses import LossConfig
from entangle.metrics.clustering import DEFAULT_PROTOCOL


def test_defaults_are_the_shared_constants_and_simgcds_objective():
    config = AnalyzeConfig()
    assert (config.soc_k, config.labeled_fraction) == (defaults.SOC_K, defaults.LABELED_FRACTION)
    assert config.loss_config() == LossConfig()
    assert dataclasses.asdict(config.loss_config()) == dataclasses.asdict(defaults.SIMGCD_LOSS)
    assert config.accuracy == (DEFAULT_PROTOCOL,) == ("v2",)  # docs/accuracy.md


def test_the_loss_fields_reach_the_objective():
    config = AnalyzeConfig(sup_weight=0.25, infonce_temperature=0.5, warmup_teacher_epochs=3)
    loss = config.loss_config()
    assert (loss.sup_weight, loss.infonce_temperature) == (0.25, 0.5)
    assert loss.warmup_teacher_epochs == 3
    # every LossConfig field has a field of the same name here, read by loss_config()
    names = {f.name for f in dataclasses.fields(AnalyzeConfig)}
    assert {f.name for f in dataclasses.fields(LossConfig)} <= names


def test_accuracy_protocols_are_parsed_and_checked():
    assert AnalyzeConfig(accuracy="v2b, v1,v2b").accuracy == ("v2b", "v1")
    with pytest.raises(EntangleValueError, match="accuracy protocols"):
        AnalyzeConfig(accuracy="v3")


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"grad_batches": -1}, "grad_batches must be >= 0"),
        ({"batch_size": 1}, "batch_size >= 2"),
        ({"sup_weight": 1.5}, "sup_weight must be in"),
        ({"teacher_temperature": 0.0}, "teacher_temperature must be > 0"),
    ],
)
def test_bad_settings_are_refused_at_construction(settings, match):
    with pytest.raises(EntangleValueError, match=match):
        AnalyzeConfig(**settings)
