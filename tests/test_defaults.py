"""entangle.defaults: one home per default, torch-free, and read by every config and loss."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from entangle import defaults
from entangle.defaults import SIMGCD_LOSS, SimGCDLoss


def test_simgcd_loss_holds_simgcd_values_and_is_frozen():
    assert SIMGCD_LOSS == SimGCDLoss()
    assert (SIMGCD_LOSS.sup_weight, SIMGCD_LOSS.memax_weight) == (0.35, 2.0)
    assert SIMGCD_LOSS.teacher_temperature < SIMGCD_LOSS.warmup_teacher_temperature
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIMGCD_LOSS.sup_weight = 0.5  # type: ignore[misc]
    assert SimGCDLoss(sup_weight=0.5).memax_weight == SIMGCD_LOSS.memax_weight


def test_every_loss_field_reaches_loss_config_train_and_analyze_configs():
    from entangle.analysis.config import AnalyzeConfig
    from entangle.gcd.config import TrainConfig
    from entangle.gcd.losses import LossConfig

    names = [f.name for f in dataclasses.fields(SimGCDLoss)]
    assert names == [f.name for f in dataclasses.fields(LossConfig)]
    for name in names:
        value = getattr(SIMGCD_LOSS, name)
        assert getattr(LossConfig(), name) == value, name
        if name != "warmup_teacher_epochs":  # TrainConfig's None means "scaled to epochs"
            assert getattr(TrainConfig, name) == value, name
        assert getattr(AnalyzeConfig, name) == value, name


def test_subspace_and_overlap_constants_reach_the_configs():
    from entangle.analysis.config import AnalyzeConfig
    from entangle.gcd.config import TrainConfig

    assert TrainConfig.soc_k == AnalyzeConfig.soc_k == defaults.SOC_K
    assert 0 < defaults.LABELED_FRACTION < 1 and defaults.KNN_K > 0


def test_importing_defaults_does_not_import_torch():
    code = "import entangle.defaults, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_and_analyze_configs_take_the_loss_fields_from_simgcd_loss():
    """One declaration: both configs' loss defaults are SimGCDLoss's own objects, with its
    types, in its order, where each config always had them (run.json keys keep their order)."""
    from entangle.analysis.config import AnalyzeConfig
    from entangle.gcd.config import TrainConfig

    loss = {f.name: f for f in dataclasses.fields(SimGCDLoss)}
    for config in (TrainConfig, AnalyzeConfig):
        got = {f.name: f for f in dataclasses.fields(config) if f.name in loss}
        assert list(got) == list(loss), config
        for name, field in got.items():
            if config is TrainConfig and name == "warmup_teacher_epochs":
                assert (field.default, field.type) == (None, "int | None")  # scaled to epochs
                continue
            assert field.default is getattr(SIMGCD_LOSS, name), (config, name)
            assert field.type == loss[name].type.__name__, (config, name)
    train = [f.name for f in dataclasses.fields(TrainConfig)]
    at = train.index("weight_decay") + 1
    assert train[at : at + len(loss)] == list(loss) and train[at + len(loss)] == "start"
    assert [f.name for f in dataclasses.fields(AnalyzeConfig)][-len(loss) :] == list(loss)
    assert TrainConfig(sup_weight=0.5).sup_weight == 0.5 and AnalyzeConfig().memax_weight == 2.0


def test_with_simgcd_loss_names_a_missing_anchor_field():
    with pytest.raises(TypeError, match="no field 'lr'"):

        @dataclasses.dataclass
        @defaults.with_simgcd_loss(after="lr")
        class Config:
            seed: int = 0
