"""The commands' shared options: every default is its config's field (one home per setting),
and the options module loads without torch (--help stays fast)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import typer

from entangle.cli.app import app
from entangle.gcd.config import TrainConfig
from entangle.gcd.losses import LossConfig


def _option_defaults(command: str) -> dict:
    params = typer.main.get_command(app).commands[command].params
    return {p.name: p.default for p in params}


@pytest.mark.parametrize("command", ["train", "analyze"])
def test_cli_loss_defaults_are_the_loss_configs(command):
    """Both commands' options show LossConfig's defaults (one home: defaults.SimGCDLoss)."""
    want = dataclasses.asdict(LossConfig())
    if command == "train":
        want["warmup_teacher_epochs"] = None  # train scales SimGCD's 30 of 200 to --epochs
    got = _option_defaults(command)
    assert {name: got[name] for name in want} == want


@pytest.mark.parametrize("command", ["train", "analyze"])
def test_every_option_default_is_its_configs(command):
    """An option named like a config field defaults to that field (the CLI reads it there)."""
    from entangle.analysis.run import AnalyzeConfig

    config = TrainConfig() if command == "train" else AnalyzeConfig()
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    got = {k: v for k, v in _option_defaults(command).items() if k in fields}
    # the option's text form of a tuple / number setting; train's epochs depend on --model
    text = {"accuracy": ",".join(config.accuracy), "aperture": str(config.aperture)}
    want = {k: text.get(k, fields[k]) for k in got}
    if command == "train":
        want["epochs"] = None
    assert len(got) >= 20 and got == want


def test_the_loss_defaults_load_without_torch():
    """--help stays fast: the options module and the defaults' home import no torch."""
    code = "import sys, entangle.cli.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
