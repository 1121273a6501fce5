"""entangle bench --scaling: every curve has its points and ratios (no timed assertions)."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from entangle.bench import scaling
from entangle.cli.app import app


def test_quick_scaling_writes_every_curve_and_its_figure(tmp_path):
    result = CliRunner().invoke(
        app, ["bench", "--scaling", "--quick", "--rounds", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "scaling.json").read_text())
    curves = data["curves"]
    expected_x = {
        "probe_vs_batch": scaling.BATCHES[1],
        "attribution_vs_batch": scaling.BATCHES[1],
        "probe_vs_group": scaling.GROUPS[1],
        "probeset_vs_size": scaling.PROBE_SETS[1],
        "eagc_vs_dim": scaling.DIMS[1],
        "knn_vs_points": scaling.KNN_POINTS[1],
        "tsne_vs_points": scaling.TSNE_POINTS[1],
    }
    for name, xs in expected_x.items():
        assert [p["x"] for p in curves[name]] == list(xs), name
        for point in curves[name]:
            values = [v for k, v in point.items() if k != "x"]
            assert values and all(math.isfinite(v) for v in values), (name, point)
    # ratios are measured times side by side; their size is the benchmark's claim, not the
    # test's (one quick round on a busy machine can put a probed step below a plain one)
    assert all(p["ratio"] > 0.0 for p in curves["probe_vs_batch"])
    # the load average beside the timings: at the start, as each point starts, at the end
    stages = [entry["stage"] for entry in data["load"]]
    assert stages[0] == "start" and stages[-1] == "end" and "batch 8" in stages
    assert len(stages) == 2 + sum(len(xs) for xs in expected_x.values()) - len(scaling.BATCHES[1])
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "probe_vs_batch" in result.output


def test_a_symlinked_out_is_refused_before_timing(tmp_path, capsys, monkeypatch):
    import sys

    import pytest

    from entangle.cli.app import main

    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "out").symlink_to(victim)
    timed = []
    monkeypatch.setattr(scaling, "run_scaling", lambda **kw: timed.append(1))
    argv = ["entangle", "bench", "--scaling", "--quick", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "symlink" in err[0]
    assert timed == [] and list(victim.iterdir()) == []
