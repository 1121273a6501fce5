"""``entangle train`` / ``analyze`` flags: every loss setting reaches the config."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

import entangle.gcd.train as recipe
from entangle.cli.app import app
from entangle.cli.options import LOSS_DEFAULTS
from entangle.gcd.losses import LossConfig

LOSS_FLAGS = {
    "--sup-weight": ("sup_weight", 0.5),
    "--memax-weight": ("memax_weight", 1.0),
    "--student-temperature": ("student_temperature", 0.2),
    "--warmup-teacher-temperature": ("warmup_teacher_temperature", 0.09),
    "--teacher-temperature": ("teacher_temperature", 0.05),
    "--warmup-teacher-epochs": ("warmup_teacher_epochs", 3),
    "--supcon-temperature": ("supcon_temperature", 0.1),
    "--infonce-temperature": ("infonce_temperature", 0.5),
}


def test_cli_loss_defaults_are_the_loss_configs():
    defaults = dataclasses.asdict(LossConfig())
    defaults.pop("warmup_teacher_epochs")  # train scales it to --epochs, analyze takes 30
    assert LOSS_DEFAULTS == defaults


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_train(config, out, setup, **kwargs):
        seen["config"] = config
        return {"acc_all": 0.5}

    monkeypatch.setattr(recipe, "prepare", lambda config, progress=None: None)
    monkeypatch.setattr(recipe, "train", fake_train)
    return seen


def test_train_flags_reach_the_train_config(captured, tmp_path):
    args = [a for flag, (_, value) in LOSS_FLAGS.items() for a in (flag, str(value))]
    args += ["--start", "reference", "--weight-decay", "1e-4", "--momentum", "0.8"]
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run"), *args])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    for name, value in LOSS_FLAGS.values():
        assert getattr(config, name) == value, name
    assert (config.start, config.weight_decay, config.momentum) == ("reference", 1e-4, 0.8)


def test_train_defaults_scale_the_warmup_to_the_epochs(captured, tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run"), "--model", "vit-s16"])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert config.epochs == 200 and config.loss_config() == LossConfig()


def test_analyze_flags_reach_the_analyze_config(monkeypatch, tmp_path):
    import entangle.analysis as analysis

    seen = {}

    def fake_analyze(checkpoints, out, config, **kwargs):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(analysis, "analyze", fake_analyze)
    args = [a for flag, (_, value) in LOSS_FLAGS.items() for a in (flag, str(value))]
    result = CliRunner().invoke(app, ["analyze", "x.pt", "--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    loss = seen["config"].loss_config()
    for name, value in LOSS_FLAGS.values():
        assert getattr(loss, name) == value, name


def test_a_vit_on_vector_data_says_which_data_suits_it(tmp_path, capsys, monkeypatch):
    """Was the model's own 'expected images [n, 3, H, W], got (64, 32)' (issue 22)."""
    import sys

    from entangle.cli.app import main

    argv = ["train", str(tmp_path / "run"), "--data", "synthetic", "--model", "vit-tiny-test"]
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--data synthetic gives vector inputs" in err and "imagefolder:PATH" in err
    assert "--model digits-mlp" in err


@pytest.mark.parametrize(
    "command",
    ["train", "report", "analyze", "ablate", "import-log", "demo", "bench", "export tensorboard"],
)
def test_every_command_help_shows_real_examples_within_80_columns(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output
    shown = [line for line in result.output.splitlines() if f"entangle {command}" in line]
    assert shown, result.output  # the examples run the command itself
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_gpus_relaunches_under_torchrun_without_the_flag(monkeypatch, tmp_path):
    import subprocess
    import sys

    from entangle.cli import train as train_cli

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 3)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["train", str(tmp_path / "r"), "--gpus", "2", "--data", "synthetic", "--gpus=2"]
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 3  # torchrun's status is the command's
    (cmd,) = calls
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:] == ["-m", "entangle", "train", str(tmp_path / "r"), "--data", "synthetic"]
    assert train_cli._without_gpus(["a", "--gpus", "4", "b"]) == ["a", "b"]
