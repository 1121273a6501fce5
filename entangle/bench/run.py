"""Step-time ratios of the probe, paper-style diagnostics and EAGC, measured side by side.

Every claim about entangle's cost is a ratio of two variants timed in ONE process on the
same model, weights and batches (the variants and their keys are listed below). The
variants run round-robin (the order rotates each round) after warm-up, so load from other
processes hits all of them alike; a ratio is the median over rounds of the per-round ratio,
and ``ratios_iqr`` gives its spread. On a CPU shared with other jobs, run with one thread
(more threads than free cores spin and wait) and, for the least noise, ``clock="cpu"``
(process CPU time, which excludes time spent descheduled).

Ratio keys (``mlp_`` prefix: the same for the digits MLP):

- ``probe_every_step_vs_plain``: step with ``Probe(every=1)`` / plain step (>= 1, lower is
  better; target <= 1.25 for the last-block ViT).
- ``probe_every_10_vs_plain``: mean step of a 10-step window with ``Probe(every=10)`` / plain
  step (target <= 1.03).
- ``attribution_extra_vs_plain``: (probed step with ``Probe(attribution=True)`` - probed step
  without) / plain step: what exact per-sample attribution adds, in plain steps (target
  <= 0.25 for the last-block ViT). ``probe_attribution_vs_plain`` is the whole step's ratio.
- ``paper_diagnostics_vs_plain``: plain step + g_S and g_U by two ``autograd.grad`` calls + SOC
  by full re-embedding of the probe set / plain step (the reference code's way; the paper
  re-embeds the whole training set, so this is a lower bound of its cost).
- ``probeset_soc_vs_full_reembed``: time of ``summarize_subspace(full_embedding(...))`` /
  time of ``ProbeSet.evaluate`` on the same set — a speed-up factor (higher is better;
  target >= 8).
- ``eagc_shared_prefix_vs_plain``: EAGC step with reference features through
  ``SharedPrefix`` / plain step (target <= 1.10).
- ``eagc_separate_reference_vs_plain``: EAGC step with a full separate reference forward (the
  paper's code) / plain step.
- ``coordinator_NAME_vs_plain`` (with the ``[mtl]`` extra): a step whose backward is
  torchjd's NAME on [g_sup, g_unsup] of every trainable parameter / plain step. Each needs
  one extra backward (the supervised gradient; the other row is the total minus it), a
  ``[2, P]`` copy and the aggregator's own solve (docs/coordinators.md).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable

import torch

from entangle.bench.models import BenchFixture, mlp_spec, vit_spec
from entangle.errors import EntangleValueError
from entangle.nn.devices import resolve_device

# ratio key -> (comparison, bound): the targets of the Probe and EAGC issues (ViT only)
TARGETS: dict[str, tuple[str, float]] = {
    "probe_every_step_vs_plain": ("<=", 1.25),
    "probe_every_10_vs_plain": ("<=", 1.03),
    "probeset_soc_vs_full_reembed": (">=", 8.0),
    "eagc_shared_prefix_vs_plain": ("<=", 1.10),
    "attribution_extra_vs_plain": ("<=", 0.25),
}

# (variant, baseline, ratio key): per-round time of variant / time of baseline; the SOC entry
# puts full re-embedding over ProbeSet, so it reads as a speed-up (higher is faster)
_RATIOS = (
    ("probe_every_step", "plain", "probe_every_step_vs_plain"),
    ("probe_every_10", "plain", "probe_every_10_vs_plain"),
    ("probe_attribution", "plain", "probe_attribution_vs_plain"),
    ("paper_diagnostics", "plain", "paper_diagnostics_vs_plain"),
    ("full_reembed", "probeset_soc", "probeset_soc_vs_full_reembed"),
    ("eagc_shared_prefix", "plain", "eagc_shared_prefix_vs_plain"),
    ("eagc_separate_reference", "plain", "eagc_separate_reference_vs_plain"),
)


def _time_round_robin(
    variants: dict, rounds: int, warmup: int, sync, clock
) -> dict[str, list[float]]:
    """Per-step seconds of each variant in each round (rounds rotate the variant order)."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        gc.collect()
        gc.disable()  # a collection inside one variant's timing would charge it alone
        try:
            for name in order:
                fn, steps = variants[name]
                sync()
                start = clock()
                fn()
                sync()
                if r >= warmup:
                    times[name].append((clock() - start) / steps)
        finally:
            gc.enable()
    return times


def _summarize(times: dict[str, list[float]], prefix: str) -> tuple[dict, dict, dict]:
    ratios, spread, ms = {}, {}, {}
    for name, values in times.items():
        ms[prefix + name] = 1000.0 * statistics.median(values)
    for variant, base, key in _RATIOS:
        per_round = [v / b for v, b in zip(times[variant], times[base], strict=True)]
        ratios[prefix + key] = statistics.median(per_round)
        q = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
        spread[prefix + key] = [q[0], q[-1]]
    # an extra cost in plain steps: both probed variants are timed in the same round
    extra = [
        (a - p) / b
        for a, p, b in zip(
            times["probe_attribution"], times["probe_every_step"], times["plain"], strict=True
        )
    ]
    # gradient-level coordinators ([mtl] extra): their step over the plain one
    for name in (n for n in times if n.startswith("coordinator_")):
        per_round = [v / b for v, b in zip(times[name], times["plain"], strict=True)]
        ratios[f"{prefix}{name}_vs_plain"] = statistics.median(per_round)
        q = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
        spread[f"{prefix}{name}_vs_plain"] = [q[0], q[-1]]
    ratios[prefix + "attribution_extra_vs_plain"] = statistics.median(extra)
    q = statistics.quantiles(extra, n=4) if len(extra) > 1 else extra * 3
    spread[prefix + "attribution_extra_vs_plain"] = [q[0], q[-1]]
    return ratios, spread, ms


def resolve_backend(model: str) -> str:
    """``"auto"`` -> ``"timm"`` when timm is installed, else ``"builtin"``."""
    if model not in ("auto", "builtin", "timm"):
        raise EntangleValueError(f"model must be 'auto', 'builtin' or 'timm', got {model!r}")
    if model != "auto":
        return model
    try:
        import timm  # noqa: F401
    except ImportError:
        return "builtin"
    return "timm"


def _checked_rounds(
    dev: torch.device,
    batch_size: int | None,
    probe_set_size: int | None,
    repeats: int | None,
    quick: bool,
    clock: str,
) -> int:
    """Reject bad ``run_bench`` arguments (one clear error each); return the timed rounds."""
    if batch_size is not None and batch_size < 2:
        raise EntangleValueError(
            f"batch_size must be >= 2 (labeled and unlabeled samples), got {batch_size}"
        )
    if probe_set_size is not None and probe_set_size < 8:
        raise EntangleValueError(f"probe_set_size must be >= 8, got {probe_set_size}")
    rounds = repeats if repeats is not None else (3 if quick else 7)
    if rounds < 1:
        raise EntangleValueError(f"repeats must be >= 1, got {rounds}")
    if clock not in ("wall", "cpu"):
        raise EntangleValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and dev.type != "cpu":
        raise EntangleValueError(
            f"clock='cpu' measures host CPU time, which misses {dev.type} work; use clock='wall'"
        )
    return rounds


def _time_spec(spec, dev, rounds, sync, timer, say, result: dict) -> dict:
    """Time one model spec's variants into ``result``; return its ``settings`` entry.

    The ratios, their spreads and the per-variant milliseconds go under ``result``'s keys
    (MLP keys with an ``mlp_`` prefix); the ProbeSet-vs-full SOC difference is the larger of
    the one before and the one after timing (the timed steps move the weights).
    """
    prefix = "" if spec.name == "vit" else f"{spec.name}_"
    say(f"{spec.name}: {spec.description}")
    fixture = BenchFixture(spec, dev)
    before = fixture.soc_difference()
    variants = fixture.variants()
    say(f"{spec.name}: timing {len(variants)} variants, {rounds} rounds")
    times = _time_round_robin(variants, rounds, 1, sync, timer)
    ratios, spread, ms = _summarize(times, prefix)
    result["ratios"].update(ratios)
    result["ratios_iqr"].update(spread)
    result["times_ms"].update(ms)
    diff = max(before, fixture.soc_difference())
    result["checks"][f"{prefix}probeset_soc_max_abs_diff"] = diff
    return {
        "model": spec.description,
        "batch_size": spec.batch_size,
        "input_shape": list(spec.input_shape),
        **fixture.dims(),
    }


def _set_threads(threads: int | None, quick: bool) -> int:
    """Apply ``threads`` (1 with ``quick`` when unset); return the count to restore after."""
    if threads is None and quick:
        threads = 1
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise EntangleValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    return previous_threads


def _synchronizer(dev: torch.device) -> Callable[[], None]:
    """What the timer calls before reading the clock: waits for CUDA work, no-op elsewhere."""

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return sync


def _with_headline(settings: dict) -> dict:
    """``settings`` plus the ViT's model / batch / image size at the top and the load after."""
    settings["model"] = settings["vit"]["model"]
    settings["batch_size"] = settings["vit"]["batch_size"]
    settings["image_size"] = settings["vit"]["input_shape"][-1]
    settings["load_average_after"] = _load()
    return settings


def run_bench(
    *,
    device: str = "auto",
    batch_size: int | None = None,
    model: str = "auto",
    repeats: int | None = None,
    quick: bool = False,
    threads: int | None = None,
    clock: str = "wall",
    probe_set_size: int | None = None,
    image_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure the step-time ratios of the probe, paper-style diagnostics and EAGC.

    Args:
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batch_size: samples per step (two views each, so ``2 * batch_size`` rows); default:
            ViT 8 on a CPU, 64 on CUDA; MLP 128 (8 / 16 with ``quick``).
        model: ViT backend, ``"auto"`` (timm when installed, else the built-in ViT),
            ``"builtin"`` or ``"timm"``.
        repeats: timed rounds (default 7; 3 with ``quick``); one warm-up round comes first.
        quick: tiny models, few rounds and one thread (for tests; the ratios mean little).
        threads: ``torch.set_num_threads`` for the run (restored after); default: unchanged
            (1 with ``quick``). On a CPU shared with other jobs, 1 avoids oversubscription.
        clock: ``"wall"`` (``perf_counter``, CUDA-synchronised) or ``"cpu"`` (this process's
            CPU time: on a loaded shared CPU it excludes time spent descheduled; use with
            ``threads=1``, CPU device only).
        probe_set_size: samples in the SOC probe set (default ViT 256 on a CPU, 2048 on
            CUDA; MLP 1024); the full re-embedding cost grows with it, the ProbeSet cost much
            less, so the speed-up grows towards the depth / trainable-depth ratio.
        image_size: ViT input size (default 64 px on a CPU with ViT-S/16, 224 px on CUDA
            with ViT-B/16).
        progress: called with a short message before each stage.

    Returns:
        ``{"ratios": {key: float}, "ratios_iqr": {key: [q1, q3]}, "times_ms": {variant: ms},
        "settings": {...}, "checks": {"probeset_soc_max_abs_diff": float, ...},
        "targets": {key: [op, bound]}}``; ratio keys and directions are listed in the module
        docstring, MLP keys carry an ``mlp_`` prefix. Ratios are medians of per-round ratios.
    """
    dev = resolve_device(device)
    backend = resolve_backend(model)
    rounds = _checked_rounds(dev, batch_size, probe_set_size, repeats, quick, clock)
    timer = time.perf_counter if clock == "wall" else time.process_time
    specs = (
        vit_spec(backend, batch_size, quick, probe_set_size, image_size, dev),
        mlp_spec(batch_size, quick, probe_set_size),
    )
    previous_threads = _set_threads(threads, quick)
    sync = _synchronizer(dev)
    say = progress or (lambda message: None)
    result: dict = {"ratios": {}, "ratios_iqr": {}, "times_ms": {}, "checks": {}}
    settings: dict = {
        "device": str(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": clock,
        "rounds": rounds,
        "warmup_rounds": 1,
        "quick": quick,
        "backend": backend,
        "load_average_before": _load(),
    }
    try:
        for spec in specs:
            settings[spec.name] = _time_spec(spec, dev, rounds, sync, timer, say, result)
    finally:
        torch.set_num_threads(previous_threads)
    result["settings"] = _with_headline(settings)
    result["targets"] = {k: list(v) for k, v in TARGETS.items()}
    return result


def meets_target(key: str, value: float) -> bool | None:
    """Whether a ratio meets its target (None when the key has none)."""
    if key not in TARGETS:
        return None
    op, bound = TARGETS[key]
    return value <= bound if op == "<=" else value >= bound


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
