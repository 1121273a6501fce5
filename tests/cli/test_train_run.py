"""train's run: the config built from the options, --gpus relaunching under torchrun."""

from __future__ import annotations

from typer.testing import CliRunner

from entangle.cli.app import app


def test_gpus_relaunches_under_torchrun_without_the_flag(monkeypatch, tmp_path):
    import subprocess
    import sys

    from entangle.cli import train_run

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
    assert train_run.without_gpus(["a", "--gpus", "4", "b"]) == ["a", "b"]


def test_without_gpus_drops_both_spellings_and_keeps_the_rest():
    from entangle.cli.train_run import without_gpus

    assert without_gpus(["r", "--gpus=8", "--data", "digits"]) == ["r", "--data", "digits"]
    assert without_gpus(["--gpus", "2", "--gpus-note", "x"]) == ["--gpus-note", "x"]
    assert without_gpus([]) == [] and without_gpus(["--gpus"]) == []


def test_epochs_default_to_the_models_and_the_other_fields_pass_through():
    from entangle.cli.train_run import build_config
    from entangle.gcd.config import TrainConfig

    fields = {"epochs": None, "model": "vit-b16", "data": "synthetic", "lr": 0.25}
    assert build_config(fields).epochs == 200  # SimGCD's ViT schedule
    small = build_config(fields | {"model": "digits-mlp"})
    assert (small.epochs, small.lr, small.data) == (12, 0.25, "synthetic")
    assert isinstance(small, TrainConfig)
    assert build_config(fields | {"epochs": 3}).epochs == 3


def test_show_config_prints_the_resolved_config_as_json(capsys):
    import json

    from entangle.cli.train_run import build_config, show_config

    config = build_config({"epochs": 2, "model": "digits-mlp", "data": "synthetic"})
    show_config(config, {"preset_source": "ignored without a preset"})
    shown = json.loads(capsys.readouterr().out)
    assert (shown["epochs"], shown["data"], shown["model"]) == (2, "synthetic", "digits-mlp")
    assert "preset_script" not in shown
