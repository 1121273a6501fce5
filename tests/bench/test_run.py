"""entangle.bench.run: structure of the result and the timing arithmetic (no timed assertions)."""

from __future__ import annotations

import math
import statistics

import pytest

from entangle.bench.run import (
    TARGETS,
    _summarize,
    _time_round_robin,
    meets_target,
    resolve_backend,
    run_bench,
)
from entangle.errors import EntangleValueError

RATIO_KEYS = (
    "probe_every_step_vs_plain",
    "probe_every_10_vs_plain",
    "paper_diagnostics_vs_plain",
    "probeset_soc_vs_full_reembed",
    "eagc_shared_prefix_vs_plain",
    "eagc_separate_reference_vs_plain",
    "probe_attribution_vs_plain",
    "attribution_extra_vs_plain",
)
VARIANTS = (
    "plain",
    "probe_every_step",
    "probe_every_10",
    "paper_diagnostics",
    "probeset_soc",
    "full_reembed",
    "eagc_shared_prefix",
    "eagc_separate_reference",
    "probe_attribution",
)
# gradient-level coordinators are timed when the [mtl] extra (torchjd) is installed
try:
    import torchjd  # noqa: F401

    from entangle.bench.models import BENCH_COORDINATORS

    COORDINATED = tuple(f"coordinator_{name}" for name in BENCH_COORDINATORS)
except ImportError:
    COORDINATED = ()
RATIO_KEYS += tuple(f"{v}_vs_plain" for v in COORDINATED)
VARIANTS += COORDINATED


@pytest.fixture(scope="module")
def quick():
    return run_bench(quick=True, device="cpu")


def test_quick_bench_has_every_ratio_finite_and_positive(quick):
    expected = set(RATIO_KEYS) | {f"mlp_{k}" for k in RATIO_KEYS}
    assert set(quick["ratios"]) == expected
    assert set(quick["ratios_iqr"]) == expected
    for key, value in quick["ratios"].items():
        low, high = quick["ratios_iqr"][key]
        if key.endswith("attribution_extra_vs_plain"):
            # a difference of two timings: on a noisy quick run it may dip below zero
            assert math.isfinite(value) and low <= high, key
            continue
        assert math.isfinite(value) and value > 0, key
        assert 0 < low <= high, key


def test_quick_bench_times_and_settings(quick):
    expected = set(VARIANTS) | {f"mlp_{v}" for v in VARIANTS}
    assert set(quick["times_ms"]) == expected
    assert all(math.isfinite(v) and v > 0 for v in quick["times_ms"].values())
    s = quick["settings"]
    assert s["device"] == "cpu" and s["quick"] and s["rounds"] == 3
    assert s["threads"] == 1  # quick mode pins one thread unless told otherwise
    assert s["backend"] in ("builtin", "timm")
    assert s["image_size"] == 32 and s["batch_size"] == 8
    vit, mlp = s["vit"], s["mlp"]
    assert vit["rows_per_step"] == 2 * vit["batch_size"]
    # only the last block trains in the backbone: probed parameters are a strict subset
    assert 0 < vit["probed_parameters"] < vit["trainable_parameters"]
    assert 0 < mlp["probed_parameters"] < mlp["trainable_parameters"]
    assert quick["targets"] == {k: list(v) for k, v in TARGETS.items()}


def test_probeset_soc_equals_full_reembedding(quick):
    assert quick["checks"]["probeset_soc_max_abs_diff"] < 1e-5
    assert quick["checks"]["mlp_probeset_soc_max_abs_diff"] < 1e-5


class _FakeClock:
    """Each variant call advances the clock by its planted duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_round_robin_rotates_and_divides_by_steps():
    clock = _FakeClock()
    calls = []

    def variant(name, cost):
        def run():
            calls.append(name)
            clock.now += cost

        return run

    variants = {
        "a": (variant("a", 1.0), 1),
        "b": (variant("b", 10.0), 10),
        "c": (variant("c", 3.0), 1),
    }
    times = _time_round_robin(variants, rounds=3, warmup=1, sync=lambda: None, clock=clock)
    # round r starts at variant r mod 3; the warm-up round is not recorded
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert times == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [3.0] * 3}


def test_summarize_uses_per_round_ratios_and_speedup_direction():
    times = {v: [1.0, 2.0, 4.0] for v in VARIANTS}
    times["probe_every_step"] = [1.1, 2.6, 4.8]  # per-round ratios 1.1, 1.3, 1.2
    times["probeset_soc"] = [0.5, 1.0, 0.25]  # full / probeset: 2, 2, 16
    ratios, spread, ms = _summarize(times, "")
    assert ratios["probe_every_step_vs_plain"] == pytest.approx(1.2)
    assert ratios["probeset_soc_vs_full_reembed"] == pytest.approx(2.0)
    assert ratios["eagc_shared_prefix_vs_plain"] == pytest.approx(1.0)
    q = statistics.quantiles([1.1, 1.3, 1.2], n=4)
    assert spread["probe_every_step_vs_plain"] == pytest.approx([q[0], q[-1]])
    assert ms["plain"] == pytest.approx(2000.0)
    assert set(_summarize(times, "mlp_")[0]) == {f"mlp_{k}" for k in RATIO_KEYS}


def test_meets_target_directions():
    assert meets_target("probe_every_step_vs_plain", 1.2)
    assert not meets_target("probe_every_step_vs_plain", 1.3)
    assert meets_target("probeset_soc_vs_full_reembed", 9.0)
    assert not meets_target("probeset_soc_vs_full_reembed", 7.0)
    assert meets_target("paper_diagnostics_vs_plain", 5.0) is None


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"model": "resnet"}, "model must be"),
        ({"clock": "gpu"}, "clock must be"),
        ({"batch_size": 1}, "batch_size"),
        ({"repeats": 0}, "repeats"),
        ({"threads": 0}, "threads"),
        ({"probe_set_size": 2}, "probe_set_size"),
        ({"image_size": 30}, "patch size"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, fragment):
    with pytest.raises(EntangleValueError, match=fragment):
        run_bench(device="cpu", quick=True, **kwargs)


def test_resolve_backend_explicit_choices():
    assert resolve_backend("builtin") == "builtin"
    assert resolve_backend("timm") == "timm"
    assert resolve_backend("auto") in ("builtin", "timm")
