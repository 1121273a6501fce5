"""`entangle bench`: the command runs the quick bench and prints parseable JSON or tables."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app

runner = CliRunner()


def test_bench_quick_json_parses_with_flat_ratios():
    result = runner.invoke(app, ["bench", "--quick", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ratios = data["ratios"]
    for key in (
        "probe_every_step_vs_plain",
        "probe_every_10_vs_plain",
        "paper_diagnostics_vs_plain",
        "probeset_soc_vs_full_reembed",
        "eagc_shared_prefix_vs_plain",
        "eagc_separate_reference_vs_plain",
        "mlp_probe_every_step_vs_plain",
    ):
        assert math.isfinite(ratios[key]) and ratios[key] > 0, key
    assert data["settings"]["device"] == "cpu"
    assert data["checks"]["probeset_soc_max_abs_diff"] < 1e-5


def test_bench_tables_name_every_ratio_and_target():
    result = runner.invoke(app, ["bench", "--quick", "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "probe_every_step_vs_plain" in result.stdout
    assert "<= 1.25" in result.stdout
    assert "probeset_soc_max_abs_diff" in result.stdout


def test_bench_bad_clock_is_an_entangle_error():
    result = runner.invoke(app, ["bench", "--quick", "--clock", "gpu"])
    assert result.exit_code != 0
    assert "clock must be" in str(result.exception)


def test_bench_times_a_report_with_both_tsne_backends():
    result = runner.invoke(
        app,
        ["bench", "--quick", "--json", "--device", "cpu", "--repeats", "1", "--report-rows", "300"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["report"]
    assert report["n_rows"] == 300
    for key in ("opentsne_s", "sklearn_s", "speedup"):
        assert math.isfinite(report[key]) and report[key] > 0


def test_bench_report_times_a_cold_and_a_cached_report(tmp_path):
    from tests.report.fake_runs import make_run

    demo = tmp_path / "demo"
    make_run(demo / "runs" / "baseline", name="baseline", seed=1, n_steps=20, feature_epochs=(2,))
    make_run(
        demo / "runs" / "eagc", name="eagc", eagc=True, seed=2, n_steps=20, feature_epochs=(2,)
    )
    result = CliRunner().invoke(
        app, ["bench", "--report", "--demo-runs", str(demo), "--rounds", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["runs"] == 2 and data["rounds"] == 1
    assert data["cached_s"] < data["cold_s"]
    assert data["cached_vs_cold"] == pytest.approx(data["cached_s"] / data["cold_s"])
    # CPU seconds beside wall-clock: the cached report computes no map or refit
    assert 0 < data["cached_cpu_s"] < data["cold_cpu_s"]
    assert data["cores"] >= 1 and "load_before" in data


def test_bench_report_names_a_folder_without_runs(tmp_path, capsys, monkeypatch):
    import sys

    from entangle.cli.app import main

    monkeypatch.setattr(
        sys, "argv", ["entangle", "bench", "--report", "--demo-runs", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "has no runs/ folder" in capsys.readouterr().err


def test_bench_json_writes_a_nan_as_null_like_every_entangle_record(monkeypatch):
    """A NaN in a result (a variant that could not be measured) is valid JSON: null, as in
    run records, not json.dumps's NaN."""
    import entangle.bench.memory

    def run_memory(**kwargs):
        return {"settings": {"device": "cpu"}, "working_mb": {"plain": math.nan}, "ok": 1.5}

    monkeypatch.setattr(entangle.bench.memory, "run_memory", run_memory)
    result = runner.invoke(app, ["bench", "--memory", "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    data = json.loads(result.stdout, parse_constant=refuse)
    assert data == {"settings": {"device": "cpu"}, "working_mb": {"plain": None}, "ok": 1.5}
    assert result.stdout == json.dumps(data, indent=2) + "\n"  # indented as before


@pytest.mark.parametrize("mode", ["--report", "--scaling"])
def test_bench_rounds_below_one_is_refused_before_any_timing(mode, tmp_path, capsys, monkeypatch):
    import sys

    from entangle.cli.app import main

    # a --demo-runs without runs/ would be refused too: --rounds is checked first, as always
    argv = ["entangle", "bench", mode, "--rounds", "0", "--demo-runs", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err


def test_bench_memory_does_not_read_rounds(monkeypatch):
    """--memory wins over --scaling and times no rounds: --rounds 0 is not its concern."""
    import entangle.bench.memory

    def run_memory(**kwargs):
        return {"settings": {}, "working_mb": {}}

    monkeypatch.setattr(entangle.bench.memory, "run_memory", run_memory)
    result = runner.invoke(app, ["bench", "--memory", "--scaling", "--rounds", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"settings": {}, "working_mb": {}}
