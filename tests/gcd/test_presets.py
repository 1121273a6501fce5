"""--preset: per-dataset values against the public scripts, flags override, --show-config."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.errors import EntangleValueError
from entangle.gcd.presets import preset_values

# CVMI-Lab/SimGCD scripts/run_cub.sh and run_cifar100.sh: batch 128, grad_from_block 11,
# epochs 200, weight_decay 5e-5, lr 0.1, warmup_teacher_temp_epochs 30, memax 2 (cub) / 4
SIMGCD_CUB = {
    "batch_size": 128,
    "epochs": 200,
    "weight_decay": 5e-5,
    "lr": 0.1,
    "warmup_teacher_epochs": 30,
    "memax_weight": 2.0,
    "trainable_blocks": 1,
}
# HaiyangZheng/EAGC scripts/SimGCD/train_scars.sh: memax 1, lr_backbone 0.1, lr 1.0 (head),
# reference 30 epochs / batch 32 / lr 0.02, aga_weight 0.7, aperture 2.0, eep_weight 3
EAGC_SCARS = {
    "memax_weight": 1.0,
    "lr": 0.1,
    "reference_epochs": 30,
    "reference_batch_size": 32,
    "reference_lr": 0.02,
    "aga_weight": 0.7,
    "aperture": 2.0,
    "eep_weight": 3.0,
    "eagc": True,
    "warmup_teacher_epochs": 30,
}


def test_values_match_the_scripts():
    cub = preset_values("simgcd", "cub:/data")
    assert {k: cub[k] for k in SIMGCD_CUB} == SIMGCD_CUB
    assert preset_values("simgcd", "cifar100:/d")["memax_weight"] == 4.0
    scars = preset_values("eagc", "scars:/d")
    assert {k: scars[k] for k in EAGC_SCARS} == EAGC_SCARS
    # train_scars.sh: --lr 1.0 (the head's), --projection_head_nlayers 1: now applied
    assert (scars["lr_head"], scars["head_mlp_layers"]) == (1.0, 1)
    assert "preset_not_applied" not in scars
    assert "lr_head" not in cub and "head_mlp_layers" not in cub  # SimGCD: one lr, bare head
    with pytest.raises(EntangleValueError, match="no cifar10 run"):
        preset_values("eagc", "cifar10:/d")
    with pytest.raises(EntangleValueError, match="benchmark"):
        preset_values("simgcd", "digits")


def test_show_config_applies_preset_and_flags_win(tmp_path):
    args = ["train", str(tmp_path / "r"), "--preset", "eagc", "--data", f"scars:{tmp_path}"]
    out = CliRunner().invoke(app, [*args, "--memax-weight", "3", "--show-config"])
    assert out.exit_code == 0, out.output
    cfg = json.loads(out.output)
    assert cfg["preset"] == "eagc" and cfg["model"] == "vit-b16" and cfg["eep_weight"] == 3.0
    assert cfg["memax_weight"] == 3.0 and cfg["loss"]["memax_weight"] == 3.0  # the flag won
    assert cfg["preset_script"]["preset_source"].endswith("scripts/SimGCD/train_scars.sh")
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_dinov2_preset_is_the_dinov2_scripts():
    # HaiyangZheng/EAGC scripts/SimGCD/train_scars_dinov2.sh: --backbone_type dinov2,
    # --eep_weight 0.5 (train_scars.sh passes 3), memax 1, reference 30 / 32 / 0.02;
    # methods/SimGCD.py: --dinov2_patch_size 14, --dinov2_num_register_tokens 4
    for name in ("cub", "scars", "aircraft"):
        values = preset_values("eagc-dinov2", f"{name}:/d")
        assert values["model"] == "vit-b14-reg4-dinov2"
        assert (values["eep_weight"], values["memax_weight"], values["aga_weight"]) == (
            0.5,
            1.0,
            0.7,
        )
        assert (values["reference_epochs"], values["reference_batch_size"]) == (30, 32)
        assert values["preset_source"].endswith(f"scripts/SimGCD/train_{name}_dinov2.sh")
    assert preset_values("eagc", "scars:/d")["eep_weight"] == 3.0
    assert preset_values("eagc", "scars:/d")["model"] == "vit-b16"
    with pytest.raises(EntangleValueError, match="no cifar100 run"):
        preset_values("eagc-dinov2", "cifar100:/d")


def test_dinov2_preset_from_the_cli(tmp_path):
    args = ["train", str(tmp_path / "r"), "--preset", "eagc-dinov2", "--data", f"cub:{tmp_path}"]
    out = CliRunner().invoke(app, [*args, "--show-config"])
    assert out.exit_code == 0, out.output
    cfg = json.loads(out.output)
    assert cfg["model"] == "vit-b14-reg4-dinov2" and cfg["preset"] == "eagc-dinov2"


def test_dinov2_show_config_applies_the_head_lr_and_the_mlp_head(tmp_path):
    # HaiyangZheng/EAGC scripts/SimGCD/train_cub_dinov2.sh: --lr 1.0 --lr_backbone 0.1
    # --projection_head_nlayers 1
    args = ["train", str(tmp_path / "r"), "--preset", "eagc-dinov2", "--data", f"cub:{tmp_path}"]
    cfg = json.loads(CliRunner().invoke(app, [*args, "--show-config"]).output)
    assert (cfg["lr"], cfg["lr_head"], cfg["head_mlp_layers"]) == (0.1, 1.0, 1)
    assert "preset_not_applied" not in cfg["preset_script"]
    out = CliRunner().invoke(
        app, [*args, "--lr-head", "0.5", "--head-mlp-layers", "0", "--show-config"]
    )
    assert out.exit_code == 0, out.output
    cfg = json.loads(out.output)
    assert (cfg["lr_head"], cfg["head_mlp_layers"]) == (0.5, 0)  # the flags won


def test_show_config_is_the_indented_json_of_run_json_config(tmp_path):
    """--show-config prints through entangle's one JSON encoder, byte for byte json.dumps's
    indented text for the plain values a config holds."""
    from entangle.gcd.config import TrainConfig, run_config

    out = CliRunner().invoke(app, ["train", str(tmp_path / "r"), "--show-config"])
    assert out.exit_code == 0, out.output
    assert out.output == json.dumps(run_config(TrainConfig()), indent=2) + "\n"
