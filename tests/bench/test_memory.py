"""entangle bench --memory: the arithmetic above the fixture, and a real child measurement."""

from __future__ import annotations

import pytest

from entangle.bench import memory


def test_working_memory_is_each_variant_peak_above_the_fixture_only_peak(monkeypatch):
    peaks = {
        "none": 500.0,
        "plain": 600.0,
        "probe_every_step": 610.0,
        "eagc_shared_prefix": 605.0,
        "probe_attribution": 750.0,
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
    }
    assert result["vs_plain"]["probe_attribution"] == pytest.approx(2.5)
    assert "fresh process per variant" in result["method"]


def test_a_child_runs_its_variant_and_reports_its_peak():
    out = memory._child("plain", quick=True)
    assert out["variant"] == "plain" and out["peak_rss_mb"] > 50
