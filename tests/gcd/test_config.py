"""TrainConfig: SimGCD's settings, the scaled warm-up, the start, what run.json records."""

from __future__ import annotations

import dataclasses
import json

import pytest

from entangle.errors import EntangleValueError
from entangle.gcd.config import TrainConfig, config_differences, run_config
from entangle.gcd.losses import LossConfig

# the optimiser of CVMI-Lab/SimGCD scripts/run_*.sh (--lr 0.1 --weight_decay 5e-5
# --batch_size 128) and train.py (--momentum 0.9)
SIMGCD_OPTIMISER = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5, "batch_size": 128}
# the reference model of HaiyangZheng/EAGC scripts/SimGCD/train_*.sh (--reference_epochs 30
# --reference_batch_size 32 --reference_lr 0.02) and methods/SimGCD.py (reference weight
# decay default 1e-4)
EAGC_REFERENCE = {
    "reference_epochs": 30,
    "reference_batch_size": 32,
    "reference_lr": 0.02,
    "reference_weight_decay": 1e-4,
}


def test_optimiser_and_reference_defaults_follow_the_public_scripts():
    config = TrainConfig()
    assert {k: getattr(config, k) for k in SIMGCD_OPTIMISER} == SIMGCD_OPTIMISER
    assert {k: getattr(config, k) for k in EAGC_REFERENCE} == EAGC_REFERENCE


def test_loss_settings_default_to_simgcds_and_reach_the_loss_config():
    config = TrainConfig(epochs=200)
    assert config.loss_config() == LossConfig()  # 30 warm-up epochs of 200, as SimGCD
    custom = TrainConfig(infonce_temperature=0.5, supcon_temperature=0.2, memax_weight=1.0)
    loss = custom.loss_config()
    assert (loss.infonce_temperature, loss.supcon_temperature, loss.memax_weight) == (0.5, 0.2, 1)
    with pytest.raises(EntangleValueError, match="infonce_temperature"):
        TrainConfig(infonce_temperature=0.0)


@pytest.mark.parametrize("epochs, warmup", [(200, 30), (100, 15), (12, 2), (6, 1), (1, 1)])
def test_teacher_warmup_keeps_simgcds_share_of_the_run(epochs, warmup):
    config = TrainConfig(epochs=epochs)
    assert config.teacher_warmup_epochs() == warmup
    assert config.loss_config().warmup_teacher_epochs == warmup
    assert TrainConfig(epochs=epochs, warmup_teacher_epochs=4).teacher_warmup_epochs() == 4


def test_start_follows_each_methods_protocol_unless_set():
    base = TrainConfig()
    eagc = TrainConfig(eagc=True)
    assert (base.start_weights(), base.variant()) == ("pretrained", "baseline")
    assert (eagc.start_weights(), eagc.variant()) == ("reference", "eagc")
    warm = dataclasses.replace(base, start="reference")
    assert (warm.start_weights(), warm.variant()) == ("reference", "baseline-reference")
    assert warm.needs_reference() and eagc.needs_reference() and not base.needs_reference()
    cold = dataclasses.replace(eagc, start="pretrained", adaptive=False)
    assert cold.variant() == "eagc-fixed-pretrained"
    assert TrainConfig(eagc=True, start="reference").variant() == "eagc"
    with pytest.raises(EntangleValueError, match="start must be one of"):
        TrainConfig(start="scratch")


def test_run_json_records_the_resolved_start_and_the_objective():
    config = TrainConfig(eagc=True, epochs=12)
    stored = json.loads(json.dumps(run_config(config)))  # as run.json holds it
    assert stored["start"] == "reference" and stored["variant"] == "eagc"
    assert stored["loss"] == dataclasses.asdict(config.loss_config())
    assert stored["loss"]["warmup_teacher_epochs"] == 2
    assert config_differences(stored, config) == []
    # the same stored run does not resume as a baseline, nor with another objective
    assert "start" in config_differences(stored, dataclasses.replace(config, eagc=False))
    other = dataclasses.replace(config, infonce_temperature=0.07)
    assert {"infonce_temperature", "loss"} <= set(config_differences(stored, other))


def test_a_run_written_before_the_coordinator_settings_resumes_at_their_defaults():
    from entangle.gcd.config import COORDINATOR_FIELDS, config_differences, run_config

    config = TrainConfig()
    old = {k: v for k, v in run_config(config).items() if k not in COORDINATOR_FIELDS}
    old = json.loads(json.dumps(old))
    assert config_differences(old, config) == []
    # the check can fail: a coordinated run is not that old run
    assert config_differences(old, TrainConfig(coordinator="pcgrad")) == [
        "coordinator",
        "variant",
    ]


def test_image_size_bounds_and_older_runs_without_it():
    import pytest

    from entangle.errors import EntangleValueError

    for bad in (8, 2048, True):
        with pytest.raises(EntangleValueError, match="image_size"):
            TrainConfig(image_size=bad)
    stored = json.loads(json.dumps(run_config(TrainConfig())))
    del stored["image_size"]  # a run.json written before the field existed: it ran at 224
    assert config_differences(stored, TrainConfig()) == []
    assert config_differences(stored, TrainConfig(image_size=32)) == ["image_size"]


def test_head_lr_and_mlp_layers_bounds_and_older_runs_without_them():
    for bad in ({"lr_head": -1.0}, {"lr_head": float("nan")}, {"lr_head": True}):
        with pytest.raises(EntangleValueError, match="lr_head"):
            TrainConfig(**bad)
    for bad in (-1, 9, True):
        with pytest.raises(EntangleValueError, match="head_mlp_layers"):
            TrainConfig(head_mlp_layers=bad)
    stored = json.loads(json.dumps(run_config(TrainConfig())))
    del stored["lr_head"], stored["head_mlp_layers"]  # written before: one lr, SimGCD's head
    assert config_differences(stored, TrainConfig()) == []
    assert config_differences(stored, TrainConfig(lr_head=1.0, head_mlp_layers=1)) == [
        "head_mlp_layers",
        "lr_head",
    ]
