"""``entangle report``: writes the report, passes names through, errors exit with code 2."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.errors import EntangleValueError
from tests.report.fake_runs import make_run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-runs")
    return make_run(root / "run", name="cli-run", n_steps=30, feature_epochs=(1,))


def test_report_command_writes_the_report_and_says_where(small_run, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        app,
        ["report", str(small_run), "--out", str(out), "--max-points", "60", "--name", "renamed"],
    )
    assert result.exit_code == 0, result.output
    assert "Report written" in result.output and "index.html" in result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "renamed" in page and "150 of 180" not in page and "60 of 180" in page
    assert (out / "tsne_overlap.png").is_file()


def test_entangle_errors_propagate_out_of_the_app(small_run, tmp_path):
    # CliRunner calls `app`, not `main`: the EntangleError arrives as the exception
    result = CliRunner().invoke(
        app, ["report", str(small_run), "--out", str(tmp_path / "o"), "--name", "a", "--name", "b"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, EntangleValueError)


def test_installed_script_prints_one_line_and_exits_2(tmp_path):
    exe = shutil.which("entangle")
    assert exe, "the entangle console script is not installed (pip install -e .)"
    done = subprocess.run(
        [exe, "report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    # rich may wrap the message to the terminal width; the words are what matter
    message = " ".join(done.stderr.split())
    assert message.startswith("error: run directory") and "does not exist" in message
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_default_output_folder_is_under_reports(small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", str(small_run), "--max-points", "60"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / small_run.name / "index.html").is_file()
