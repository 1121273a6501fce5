"""``entangle analyze``: table and report, JSON summary, errors exit 2 without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from entangle.checkpoints import CheckpointError, save_checkpoint
from entangle.cli.app import app
from entangle.errors import EntangleValueError
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead

FAST = ["--max-samples", "120", "--grad-batches", "1", "--batch-size", "16"]


def make_ckpt(path, num_classes: int = 10):
    torch.manual_seed(0)
    return save_checkpoint(
        path, ResidualMLP(in_dim=64, dim=16, depth=2), GCDHead(16, num_classes, hidden_dim=32)
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_ckpt(tmp_path_factory.mktemp("cli-ckpt") / "model.pt")


def test_table_names_the_format_and_the_report_is_written(ckpt, tmp_path):
    result = CliRunner().invoke(
        app, ["analyze", str(ckpt), "--out", str(tmp_path), *FAST, "--no-kmeans"]
    )
    assert result.exit_code == 0, result.output
    assert "entangle layout, K=10" in result.output
    assert "head acc All" in result.output and "cos(g_S, g_U) raw" in result.output
    assert "ms/image" in result.output
    assert (tmp_path / "report" / "index.html").is_file()
    assert (tmp_path / "model" / "DONE").is_file()


def test_json_summary(ckpt, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "analyze",
            str(ckpt),
            "--out",
            str(tmp_path),
            *FAST,
            "--json",
            "--no-report",
            "--no-tsne",
            "--no-kmeans",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    # strict JSON (runs.io.to_jsonable, the records' one conversion): the skipped k-means is null
    assert "NaN" not in result.output and payload["runs"][0]["summary"]["kmeans_all"] is None
    (run,) = payload["runs"]
    assert run["summary"]["format"] == "entangle" and run["summary"]["grad_batches"] == 1
    assert 0 <= run["summary"]["acc_all"] <= 1 and payload["report"] is None
    assert -1 <= run["summary"]["cos_raw"] <= 1


def test_class_count_mismatch_raises_a_checkpoint_error(tmp_path):
    path = make_ckpt(tmp_path / "k8.pt", num_classes=8)
    result = CliRunner().invoke(app, ["analyze", str(path), "--out", str(tmp_path / "o"), *FAST])
    # CliRunner calls `app`, not `main`: the EntangleError arrives as the exception
    assert isinstance(result.exception, CheckpointError)
    assert "K=8" in str(result.exception)


class CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_checkpoint_exits_2_with_one_line_and_its_code_does_not_run(tmp_path):
    victim = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": CreatesFile(victim)}, evil)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from entangle.cli.app import main; main()",
            "analyze",
            str(evil),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert message.startswith("error:") and "--trust-checkpoint" in message
    assert "Traceback" not in done.stderr
    assert not victim.exists()
    assert not (tmp_path / "o").exists()


def test_accuracy_option_names_the_protocol_and_adds_rows(ckpt, tmp_path):
    args = ["analyze", str(ckpt), "--out", str(tmp_path), *FAST, "--no-report", "--no-tsne"]
    result = CliRunner().invoke(app, [*args, "--no-grad", "--accuracy", "v2b,v1"])
    assert result.exit_code == 0, result.output
    assert "accuracy protocol" in result.output and "v2b" in result.output
    assert "head acc All (v1)" in result.output and "k-means New (v1)" in result.output
    assert "(v2)" not in result.output  # only the protocols asked for
    bad = CliRunner().invoke(app, [*args, "--accuracy", "v7"])
    assert bad.exit_code != 0


def test_labeled_split_file_reaches_the_run_and_a_bad_one_exits_2(ckpt, tmp_path):
    from entangle.analysis import load_inputs

    old = torch.nonzero(~load_inputs("digits").novel).flatten()[::4]
    split = tmp_path / "labeled.txt"
    split.write_text("\n".join(str(int(i)) for i in old) + "\n")
    args = ["analyze", str(ckpt), "--out", str(tmp_path / "o"), *FAST, "--no-report"]
    args += ["--no-tsne", "--no-kmeans", "--no-grad", "--labeled-split", str(split)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "o" / "model" / "run.json").read_text())
    assert meta["config"]["labeled_split"] == str(split)
    split.write_text("not-a-sample\n")
    bad = CliRunner().invoke(app, [*args[:3], str(tmp_path / "o2"), *args[4:]])
    # an EntangleError: the console script prints its one line and exits 2 (entangle/cli/app.py)
    assert isinstance(bad.exception, EntangleValueError)
    assert "'not-a-sample' names no sample" in str(bad.exception)


def test_format_option_reaches_the_loader(ckpt, tmp_path):
    args = ["analyze", str(ckpt), *FAST, "--no-report", "--no-tsne", "--no-grad", "--no-kmeans"]
    ok = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--format", "entangle"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--format", "simgcd"])
    assert bad.exit_code != 0 and "not a simgcd checkpoint" in str(bad.exception)


def test_analyze_options_reach_the_config_by_name(monkeypatch, tmp_path):
    """Every option is an AnalyzeConfig field (two renamed) or steers the run: what the
    command hands to analyze() is the config its options spell out."""
    import dataclasses
    import inspect

    from entangle.analysis.config import AnalyzeConfig
    from entangle.cli import analyze as command

    params = inspect.signature(command.analyze_command).parameters
    fields = {f.name for f in dataclasses.fields(AnalyzeConfig)}
    named = {command.RENAMED.get(p, p) for p in params if p not in command.RUN_OPTIONS}
    assert len(named) >= 25 and named <= fields

    seen = {}

    def analyze(checkpoints, out, config, **kwargs):
        seen.update(checkpoints=checkpoints, out=out, config=config)
        raise SystemExit(0)

    import entangle.analysis

    monkeypatch.setattr(entangle.analysis, "analyze", analyze)
    split = tmp_path / "labeled.txt"
    args = ["analyze", "--out", str(tmp_path / "an"), "--format", "simgcd", "--head", "h.pt"]
    args += ["--labeled-split", str(split), "--no-grad", "--memax-weight", "3", "--seed", "4"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert seen["checkpoints"] == [] and seen["out"] == tmp_path / "an"
    assert seen["config"] == AnalyzeConfig(
        checkpoint_format="simgcd",
        head_file="h.pt",
        labeled_split=str(split),
        grad=False,
        memax_weight=3.0,
        seed=4,
    )
