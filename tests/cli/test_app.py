"""The entry point: SIGINT / SIGTERM end in one line saying how to resume (issue 19)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

import entangle.gcd.train as recipe
from entangle.cli.app import interrupted_line, main


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_train_prints_how_to_resume(sig, code, tmp_path, capsys, monkeypatch):
    def killed_while_preparing(config, progress=None, trust_checkpoint=False):
        os.kill(os.getpid(), sig)  # the handler raises here, as at any point of a real run
        raise AssertionError("the signal did not interrupt")

    monkeypatch.setattr(recipe, "prepare", killed_while_preparing)
    before = signal.getsignal(sig)
    run = str(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["entangle", "train", run, "--data", "synthetic"])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    assert info.value.code == code
    (line,) = captured.err.strip().splitlines()
    assert f"interrupted by {sig.name}" in line and "resumable" in line
    assert f"rerun: entangle train {run} --data synthetic" in line
    assert "Traceback" not in captured.out + captured.err
    assert signal.getsignal(sig) is before  # the handlers are the caller's again


def test_commands_without_resume_say_to_start_again():
    line = interrupted_line(signal.SIGINT, ["report", "a b", "--out", "r"])
    assert "nothing half-written was kept" in line and "rerun: entangle report 'a b'" in line
