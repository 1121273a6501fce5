"""entangle bench --memory: the arithmetic above the fixture, and a real child measurement."""

from __future__ import annotations

import pytest

from entangle.bench import memory
from entangle.errors import EntangleValueError


def test_working_memory_is_each_variant_peak_above_the_fixture_only_peak(monkeypatch):
    peaks = {
        "none": 500.0,
        "plain": 600.0,
        "probe_every_step": 610.0,
        "eagc_shared_prefix": 605.0,
        "probe_attribution": 750.0,
        "probe_attribution_rows": 620.0,
    }
    monkeypatch.setattr(
        memory, "_run_child", lambda variant, quick: {"peak_rss_mb": peaks[variant]}
    )
    result = memory.run_memory(device="cpu", quick=True)
    assert result["working_mb"] == {
        "plain": 100.0,
        "probe_every_step": 110.0,
        "eagc_shared_prefix": 105.0,
        "probe_attribution": 250.0,
        "probe_attribution_rows": 120.0,
    }
    assert result["vs_plain"]["probe_attribution"] == pytest.approx(2.5)
    assert "fresh process per variant" in result["method"]


def test_a_child_runs_its_variant_and_reports_its_peak():
    out = memory._child("plain", quick=True)
    assert out["variant"] == "plain" and out["peak_rss_mb"] > 50


def test_rounds_give_the_median_of_each_rounds_peak_above_its_own_fixture(monkeypatch):
    # each round's working memory is its variant's peak minus that round's fixture-only peak
    bases = iter([500.0, 520.0, 490.0])
    state = {"base": 0.0}

    def child(variant, quick):
        if variant == "none":
            state["base"] = next(bases)
            return {"peak_rss_mb": state["base"]}
        extra = {"plain": 100.0, "probe_attribution": 200.0}.get(variant, 110.0)
        return {"peak_rss_mb": state["base"] + extra, "step_s": 0.5}

    monkeypatch.setattr(memory, "_run_child", child)
    result = memory.run_memory(device="cpu", quick=True, rounds=3)
    assert result["rounds_mb"]["plain"] == pytest.approx([100.0, 100.0, 100.0])
    assert result["working_mb"]["probe_attribution"] == pytest.approx(200.0)
    assert result["vs_plain"]["probe_attribution_rows"] == pytest.approx(1.1)
    assert result["settings"]["rounds"] == 3 and len(result["load_average"]) == 2
    assert result["step_s"]["plain"] == pytest.approx(0.5)
    with pytest.raises(EntangleValueError, match="rounds"):
        memory.run_memory(device="cpu", quick=True, rounds=0)
