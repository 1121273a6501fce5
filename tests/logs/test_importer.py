"""``import_log`` / ``entangle import-log``: logs become run directories the report draws."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.errors import EntangleValueError
from entangle.logs import import_log
from entangle.runs.directory import RunReader
from tests.logs.log_samples import EAGC_LOG, SIMGCD_LOG


@pytest.fixture
def simgcd_dir(tmp_path):
    # SimGCD's layout: exp_root/simgcd/log/<exp name>/log.txt and checkpoints/model.pt
    folder = tmp_path / "simgcd" / "log" / "cub_(05.03.2024_|_11.532)"
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    return folder


def test_text_log_becomes_a_complete_run(simgcd_dir, tmp_path):
    result = import_log([simgcd_dir / "log.txt"], tmp_path / "run", name="SimGCD (log)")
    assert (result.kind, result.epochs, result.steps, result.unknown_lines) == ("text", 2, 3, 1)
    assert "1 unknown lines" in result.notes[0] and "CUDA kernel" in result.notes[0]
    reader = RunReader(tmp_path / "run")
    assert reader.complete and reader.warnings == [] and reader.name == "SimGCD (log)"
    assert reader.config["kind"] == "text" and reader.config["parse"][0]["unknown"] == 1
    assert [s["step"] for s in reader.steps] == [0, 10, 46]  # epoch x batches + batch
    assert list(reader.column("acc_new", "epochs")) == [0.2671, 0.3440]
    assert reader.epochs[1]["acc_protocol"] == "v2"
    assert reader.summary["acc_all"] == 0.4002 and reader.summary["unknown_lines"] == 1


def test_a_folder_is_searched_for_its_log(simgcd_dir, tmp_path):
    result = import_log([simgcd_dir.parent], tmp_path / "run")
    assert result.epochs == 2
    assert RunReader(tmp_path / "run").config["files"] == [str((simgcd_dir / "log.txt").resolve())]


def test_reference_phase_and_best_lines_are_kept_in_the_run_config(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(EAGC_LOG, encoding="utf-8")
    import_log([log], tmp_path / "run")
    config = RunReader(tmp_path / "run").config
    assert config["reference"]["epochs"] == [{"epoch": 0, "loss_avg": 4.21}]
    assert config["best"] == [{"epoch": 1, "all": 0.4002, "old": 0.512, "new": 0.344}]
    assert config["printed_protocol"] == "v2"


def test_an_existing_run_is_never_overwritten(simgcd_dir, tmp_path):
    import_log([simgcd_dir / "log.txt"], tmp_path / "run")
    with pytest.raises(EntangleValueError, match="already holds a run"):
        import_log([simgcd_dir / "log.txt"], tmp_path / "run")


def test_bad_arguments_are_clear_errors(tmp_path, simgcd_dir):
    with pytest.raises(EntangleValueError, match="does not exist"):
        import_log([tmp_path / "nope.txt"], tmp_path / "r1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EntangleValueError, match="no log.txt and no TensorBoard"):
        import_log([empty], tmp_path / "r2")
    fake_events = tmp_path / "events.out.tfevents.123.host"
    fake_events.write_bytes(b"\x00garbage")
    if importlib.util.find_spec("tensorboard") is None:  # the plain install: say what to add
        with pytest.raises(EntangleValueError, match="needs the tensorboard package"):
            import_log([simgcd_dir / "log.txt", fake_events], tmp_path / "r3")
        assert not (tmp_path / "r3").exists()
    else:  # tensorboard's loader stops at a broken record; the text log still imports
        result = import_log([simgcd_dir / "log.txt", fake_events], tmp_path / "r3")
        assert result.epochs == 2 and result.kind == "text+tensorboard"


@pytest.mark.slow
def test_mixed_report_draws_each_run_only_where_it_has_data(simgcd_dir, tmp_path, monkeypatch):
    """Imported + probed runs: no empty panel, no 'n/a' comparison, no probed-step count for
    the imported run; each figure says which run it leaves out and why (issue 22)."""
    from entangle.report import (
        build_report,
        plot_attribution,
        plot_curves,
        plot_energy,
        plot_overlap,
    )
    from tests.report.fake_runs import make_run

    empty: list[str] = []
    for module in (plot_attribution, plot_curves, plot_energy, plot_overlap):
        monkeypatch.setattr(module, "no_data", lambda ax, message: empty.append(message))
    import_log([simgcd_dir / "log.txt"], tmp_path / "imported", name="simgcd-log")
    probed = make_run(tmp_path / "probed", name="probed", eagc=True, n_steps=30, n_per_class=8)
    index = build_report([tmp_path / "imported", probed], tmp_path / "report", tsne_max_points=60)
    page = re.sub(r"base64,[^\"]*", "", index.read_text(encoding="utf-8"))
    assert empty == []
    assert "n/a" not in page and "(last nan)" not in page
    assert "Values from imported training logs" in page and "simgcd-log" in page
    assert (tmp_path / "report" / "logged_curves.png").is_file()
    assert "Left out: probed (no imported training log)" in page
    assert "Left out: simgcd-log (no saved features)" in page
    assert "Left out: simgcd-log (no probe records" in page
    row = re.search(r'<th scope="row">Probed steps</th>(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r">([^<]*)</td>", row) == ["-", "30"]


def test_cli_prints_counts_and_bad_input_exits_2(simgcd_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["import-log", str(simgcd_dir / "log.txt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 evaluations, 3 steps, 1 unknown lines" in result.output
    assert "CUDA kernel" in result.output
    # the echoed log line is printed as written: loguru's name:function:line, no emoji
    assert "__main__:train:" in result.output and "\U0001f68b" not in result.output
    assert f"entangle report {out}" in result.output
    assert json.loads((out / "DONE").read_text())["summary"]["epochs"] == 2
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from entangle.cli.app import main; main()",
            "import-log",
            str(tmp_path / "missing.txt"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
