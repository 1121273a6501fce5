"""``entangle export tensorboard``: each run into OUT/<its folder name>; runs sharing a folder
name refused before anything is written."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app, main


def test_runs_sharing_a_folder_name_are_refused(tmp_path, capsys, monkeypatch):
    for parent in ("a", "b"):
        (tmp_path / parent / "run").mkdir(parents=True)
    argv = ["export", "tensorboard", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    monkeypatch.setattr(sys, "argv", ["entangle", *argv, "--out", str(tmp_path / "tb")])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "runs share a folder name (run, run)" in err
    assert not (tmp_path / "tb").exists()


def test_each_run_goes_to_its_own_folder_with_its_counts(tmp_path):
    pytest.importorskip("tensorboard")
    from tests.report.fake_runs import make_run

    runs = [make_run(tmp_path / n, name=n, n_steps=6, feature_epochs=()) for n in ("x", "y")]
    result = CliRunner().invoke(
        app, ["export", "tensorboard", *map(str, runs), "--out", str(tmp_path / "tb")]
    )
    assert result.exit_code == 0, result.output
    for n in ("x", "y"):
        assert list((tmp_path / "tb" / n).glob("events.out.tfevents.*"))
        assert f"{tmp_path / 'tb' / n}: 6 steps" in result.output.replace("\n", "")
