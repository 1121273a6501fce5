"""``entangle import-log``: the counts and the next command printed, log lines echoed
literally; --analyze without a checkpoint in the folders says what to do."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app, main
from tests.logs.log_samples import SIMGCD_LOG


def test_counts_notes_and_the_next_command_are_printed(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["import-log", str(log), "--out", str(out), "--name", "s"])
    assert result.exit_code == 0, result.output
    assert f"Imported text log: 2 evaluations, 3 steps, 1 unknown lines -> {out}" in (
        result.output.replace("\n", "")
    )
    assert result.output.splitlines()[0].startswith("note: ")
    assert result.output.rstrip().endswith(f"next: entangle report {out}")
    assert json.loads((out / "run.json").read_text())["name"] == "s"


def test_analyze_without_a_checkpoint_in_the_folders_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "log.txt").write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    argv = ["import-log", str(tmp_path / "exp"), "--out", str(tmp_path / "r"), "--analyze", "x"]
    monkeypatch.setattr(sys, "argv", ["entangle", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--analyze: no checkpoints/model.pt" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r-analysis").exists()
