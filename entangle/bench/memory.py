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
import subprocess
import sys

import torch

from entangle.bench.models import BenchFixture, vit_spec
from entangle.bench.run import resolve_backend
from entangle.nn.devices import resolve_device

VARIANTS = ("plain", "probe_every_step", "eagc_shared_prefix", "probe_attribution")
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
    if variant != "none":
        fn, _steps = fixture.variants()[variant]
        for _ in range(QUICK["steps"] if quick else STEPS):
            fn()
    return {"variant": variant, "peak_rss_mb": _peak_rss_mb()}


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


def run_memory(*, device: str = "auto", quick: bool = False, progress=None) -> dict:
    """Working memory of each variant (MB above the fixture) and its ratio to plain's.

    Returns:
        ``{"method", "settings", "working_mb": {variant: MB}, "vs_plain": {variant: ratio}}``.
    """
    dev = resolve_device(device)
    say = progress or (lambda message: None)
    working: dict[str, float] = {}
    if dev.type == "cuda":
        method = "torch.cuda.max_memory_allocated above the fixture, one process"
        fixture = _fixture(quick, dev)
        variants = fixture.variants()
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
        say("memory: fixture only")
        base = _run_child("none", quick)["peak_rss_mb"]
        for name in VARIANTS:
            say(f"memory: {name}")
            working[name] = _run_child(name, quick)["peak_rss_mb"] - base
    plain = working["plain"]
    return {
        "method": method,
        "settings": {
            "device": str(dev),
            "model": "vit-tiny-test" if quick else "vit-s16",
            "image_size": QUICK["image_size"] if quick else IMAGE_SIZE,
            "batch_size": QUICK["batch"] if quick else BATCH,
            "steps": QUICK["steps"] if quick else STEPS,
        },
        "working_mb": working,
        "vs_plain": {k: (v / plain if plain > 0 else float("nan")) for k, v in working.items()},
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(_child(args[0], "--quick" in args)))
