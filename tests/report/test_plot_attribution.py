"""Attribution figures: top samples summed over steps; a grid only where images exist."""

from __future__ import annotations

import pytest

from entangle.report import plot_attribution
from entangle.report.load import load_runs
from entangle.runs.directory import RunWriter


def _run(path, data="synthetic"):
    with RunWriter(path, config={"data": data, "seed": 0}, seed=0) as w:
        for step, (idx, share) in enumerate([([5, 7], [-0.3, -0.1]), ([7, 2], [-0.25, 0.05])]):
            w.write_step({
                "step": step,
                "attribution": {"unsup_rows": {
                    "class": [0.1, -0.2], "top_index": idx, "top_share": share,
                    "top_labeled": [False, True],
                }},
            })  # fmt: skip
        w.finish({})
    return load_runs([path])


def test_top_samples_sum_their_shares_over_steps(tmp_path):
    (run,) = _run(tmp_path / "r")
    top = plot_attribution.top_samples(run)
    assert [t[0] for t in top] == [7, 5, 2]
    assert top[0][1] == pytest.approx(-0.35) and top[0][2] == 2


def test_figures(tmp_path):
    runs = _run(tmp_path / "r")
    assert plot_attribution.has_attribution(runs)
    assert plot_attribution.class_attribution_figure(runs) is not None
    assert plot_attribution.conflicting_samples_figure(runs) is None  # synthetic: no images
    digits = _run(tmp_path / "d", data="digits")
    assert plot_attribution.conflicting_samples_figure(digits) is not None
