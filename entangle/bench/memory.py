"""``entangle bench --memory``: each variant's peak working memory beside the plain step's.

On a CPU one fresh process per variant (``python -m entangle.bench.memory VARIANT``) builds
the bench fixture, runs the variant's steps, and reports its peak resident set size; the
variant's working memory is that peak minus the peak of a process that only builds the
fixture, so the model, batches and probe set are not counted and no variant inherits another's
freed-but-kept heap. On CUDA the variants share one process and read
``torch.cuda.max_memory_allocated`` above the fixture's allocation, reset before each.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from entangle.bench.models import BenchFixture, vit_spec
from entangle.bench.run import resolve_backend
from entangle.errors import EntangleValueError
from entangle.nn.devices import resolve_device

VARIANTS = (
    "plain",
    "probe_every_step",
    "eagc_shared_prefix",
    "probe_attribution",
    "probe_attribution_rows",  # a subsample of ATTRIBUTION_ROWS rows (bench/models.py)
)
# the measurement setting: ViT-S/16 at 112 px, batch 32, two views, one trainable block
IMAGE_SIZE, BATCH, STEPS = 112, 32, 3
QUICK = {"image_size": 32, "batch": 8, "steps": 2}


def _fixture(quick: bool, device: torch.device) -> BenchFixture:
    image = QUICK["image_size"] if quick else IMAGE_SIZE
    batch = QUICK["batch"] if quick else BATCH
    spec = vit_spec(resolve_backend("auto"), batch, quick, 32, image, device)
    return BenchFixture(spec, device)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(variant: str, quick: bool) -> dict:
    torch.set_num_threads(1)
    fixture = _fixture(quick, torch.device("cpu"))
    seconds = []
    if variant != "none":
        fn, _steps = fixture.memory_variants()[variant]
        for _ in range(QUICK["steps"] if quick else STEPS):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    # wall seconds per step, one thread: a rough figure beside the memory, not the time bench
    step_s = statistics.median(seconds) if seconds else None
    return {"variant": variant, "peak_rss_mb": _peak_rss_mb(), "step_s": step_s}


def _run_child(variant: str, quick: bool) -> dict:
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.maps import worker_env

    # the child sets torch's threads itself; the environment is left as the user has it
    env = worker_env(single_thread=False)
    cmd = [sys.executable, "-m", "entangle.bench.memory", variant]
    if quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"memory bench of {variant} failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory(
    *, device: str = "auto", quick: bool = False, progress=None, rounds: int = 1
) -> dict:
    """Working memory of each variant (MB above the fixture) and its ratio to plain's.

    Args:
        rounds: CPU only: fresh processes per variant (and fixture-only ones), interleaved;
            each round's working memory is its variant's peak minus its fixture-only peak,
            and the result is the median over rounds (CUDA's figure does not vary: one round).

    Returns:
        ``{"method", "settings", "working_mb": {variant: MB}, "vs_plain": {variant: ratio}}``;
        on a CPU also ``rounds_mb`` (each round's figures), ``step_s`` (median wall seconds
        per step, one thread) and ``load_average`` (``/proc/loadavg`` before and after).
    """
    if int(rounds) < 1:
        raise EntangleValueError(f"memory bench rounds must be >= 1, got {rounds}")
    dev = resolve_device(device)
    say = progress or (lambda message: None)
    working: dict[str, float] = {}
    extra: dict = {}
    if dev.type == "cuda":
        method = "torch.cuda.max_memory_allocated above the fixture, one process"
        fixture = _fixture(quick, dev)
        variants = fixture.memory_variants()
        for name in VARIANTS:
            say(f"memory: {name}")
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            for _ in range(QUICK["steps"] if quick else STEPS):
                variants[name][0]()
            torch.cuda.synchronize(dev)
            working[name] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        method = "peak RSS of a fresh process per variant minus a fixture-only process"
        extra = _cpu_rounds(int(rounds), quick, say)
        working = {k: statistics.median(v) for k, v in extra["rounds_mb"].items()}
    plain = working["plain"]
    return extra | {
        "method": method,
        "settings": {
            "device": str(dev),
            "model": "vit-tiny-test" if quick else "vit-s16",
            "image_size": QUICK["image_size"] if quick else IMAGE_SIZE,
            "batch_size": QUICK["batch"] if quick else BATCH,
            "steps": QUICK["steps"] if quick else STEPS,
            "rounds": int(rounds) if dev.type != "cuda" else 1,
        },
        "working_mb": working,
        "vs_plain": {k: (v / plain if plain > 0 else float("nan")) for k, v in working.items()},
    }


def _cpu_rounds(rounds: int, quick: bool, say) -> dict:
    """Each round: a fixture-only process, then one fresh process per variant."""
    load = [_load_average()]
    per_round: dict[str, list[float]] = {name: [] for name in VARIANTS}
    step_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        say(f"memory round {r + 1}/{rounds}: fixture only")
        base = _run_child("none", quick)["peak_rss_mb"]
        for name in VARIANTS:
            say(f"memory round {r + 1}/{rounds}: {name}")
            child = _run_child(name, quick)
            per_round[name].append(child["peak_rss_mb"] - base)
            if child.get("step_s") is not None:
                step_s[name].append(child["step_s"])
    load.append(_load_average())
    return {
        "rounds_mb": per_round,
        "step_s": {k: statistics.median(v) for k, v in step_s.items() if v},
        "load_average": load,
    }


def _load_average() -> str | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return f.read().strip()
    except OSError:  # not Linux
        return None


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(_child(args[0], "--quick" in args)))
