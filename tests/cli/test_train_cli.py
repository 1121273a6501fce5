"""``entangle train`` / ``analyze`` flags: every loss setting reaches the config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import entangle.gcd.train as recipe
from entangle.cli.app import app
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


SUMMARY = {
    "acc_all": 0.5,
    "acc_old": 0.625,
    "acc_new": float("nan"),
    "acc_protocol": "v2",
    "early_steps": 200,
    "gdc_early": 0.25,
    "gdc_early_eagc": 0.125,
    "soc_early": 0.75,
    "conflict_rate": 0.5,
    "steps_probed": 2,
    "nan_steps": 0,
}


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_train(config, out, setup, *, on_step, on_epoch, **kwargs):
        import torch

        seen["config"] = config
        for step, loss in enumerate((3.0, 1.0), 1):  # the epoch's mean loss: 2.0
            on_step(step, 2, torch.tensor(loss))
        on_epoch(0, {"acc_all": 0.5, "acc_old": 0.625, "acc_new": float("nan")})
        return dict(SUMMARY)

    def fake_prepare(config, progress=None, trust_checkpoint=False):
        seen["trust_checkpoint"] = trust_checkpoint

    monkeypatch.setattr(recipe, "prepare", fake_prepare)
    monkeypatch.setattr(recipe, "ensure_reference", lambda config, setup, progress=None: None)
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


def test_train_prints_each_evaluation_as_simgcd_logs_it_and_the_report_command(
    captured, tmp_path, monkeypatch
):
    """Was a bare bar and a raw JSON dump of DONE (issue 22)."""
    monkeypatch.chdir(tmp_path)
    run = Path("my run")
    result = CliRunner().invoke(app, ["train", str(run), "--epochs", "3"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # SimGCD's log.txt wording; epochs 0-based as there and in epochs.jsonl; NaN stays visible
    assert "Train Epoch: 0 Avg Loss: 2.0000 (epoch 1 of 3)" in lines
    assert "Epoch 0, Train ACC Unlabelled_v2: All 0.5000 | Old 0.6250 | New nan" in lines
    assert f"Run written: {run} (digits)" in lines
    assert "  last evaluation (v2): All 0.5000 | Old 0.6250 | New nan" in lines
    assert "  GDC first 200 steps 0.250 (raw; EAGC-corrected 0.125)" in lines
    assert f"  entangle report '{run}' --out 'reports/my run'" in lines
    assert "{" not in result.output  # no JSON dump
    assert max(len(line) for line in lines) <= 80
    # not a terminal: no progress bar redraws in the output
    assert "it/s" not in result.output and "eta" not in result.output


def test_trust_checkpoint_reaches_the_loading_of_pretrained_and_reference(captured, tmp_path):
    """train had no --trust-checkpoint though its refusal said to pass it (issue 19)."""
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run"), "--trust-checkpoint"])
    assert result.exit_code == 0, result.output
    assert captured["trust_checkpoint"] is True
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run2")])
    assert result.exit_code == 0 and captured["trust_checkpoint"] is False


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


def test_train_help_lists_every_registered_backbone(monkeypatch):
    # the --model help is read from the registry, so a backbone registered anywhere shows up
    from entangle.models.registry import backbone_names

    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    names = backbone_names()
    assert {"digits-mlp", "vit-s16", "vit-b14-dinov2"} <= set(names)
    for name in names:
        assert name in result.output, name


@pytest.mark.slow
def test_gpus_2_on_cpu_trains_one_run_written_by_rank_0(tmp_path):
    # the real launch: torchrun, two gloo processes, rank 0 writing and printing
    import json
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    flags = ["--data", "synthetic", "--epochs", "1", "--batch-size", "96", "--device", "cpu"]
    flags += ["--gpus", "2", "--probe-every", "3", "--attribution", "0"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)

    def launch(out):
        command = [sys.executable, "-m", "entangle", "train", str(out), *flags]
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    done = launch(out)
    if done.returncode != 0 and _gloo_teardown_abort(done.stderr):
        # gloo has no graceful shutdown (pytorch/gloo PR 388): a rank can be aborted when
        # its peer's socket closes first; the barrier before teardown makes it rare, and a
        # second launch tells that race from a real failure (anything else fails at once)
        out = tmp_path / "run-again"
        done = launch(out)
    assert done.returncode == 0, _rank_failure(done.stderr)
    assert done.stdout.count("Run written:") == 1  # rank 0 only
    meta = json.loads((out / "run.json").read_text())
    assert meta["distributed"]["world_size"] == 2 and meta["distributed"]["backend"] == "gloo"
    assert (out / "DONE").is_file()


def _rank_failure(stderr: str) -> str:
    """The lines of a torchrun launch's stderr that say why a rank died (torchrun's own
    summary, which is all the tail holds, names only the signal)."""
    import re

    wanted = re.compile(r"terminate called|what\(\)|Error|Traceback|gloo|Abort", re.I)
    lines = [line for line in stderr.splitlines() if wanted.search(line)]
    return "\n".join(lines[:60]) + "\n--- tail ---\n" + stderr[-1500:]


def _gloo_teardown_abort(stderr: str) -> bool:
    """True when a rank was aborted by gloo's transport ('Connection closed by peer' /
    'reset by peer' thrown in gloo's I/O thread), the known shutdown race."""
    return "gloo" in stderr and ("closed by peer" in stderr or "reset by peer" in stderr)


def test_rank_failure_shows_why_a_rank_died():
    stderr = "x\n" * 500 + "terminate called after throwing an instance of 'gloo::IoException'\n"
    stderr += "  what():  [pair.cc:589] Read error: Connection reset by peer\n" + "y\n" * 2000
    shown = _rank_failure(stderr)
    assert "gloo::IoException" in shown and "reset by peer" in shown
    assert _gloo_teardown_abort(stderr)
    assert not _gloo_teardown_abort("RuntimeError: shapes do not match\n")
