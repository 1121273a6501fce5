"""One command that checks the GPU path where there is a GPU: ``python -m
entangle.bench.gpu_check``.

Four parts inside one time budget (``--budget-s``, default 300 s: five minutes on one GPU; see
docs/reliability.md):

1. the ``gpu``-marked tests (``pytest -m gpu``, from a repository checkout);
2. a probed and a non-probed EAGC step under ``torch.cuda.set_sync_debug_mode("error")``,
   once with fp16 autocast and a ``GradScaler`` and once with bf16 autocast: any host sync in
   ``EAGC.coordinate`` or ``Probe.backward`` raises, except the probed step's one allowed
   device-to-host transfer (``to_host``), which is counted;
3. the bench modes on CUDA (:func:`bench_modes`): ``entangle bench``'s step ratios at the
   CUDA defaults (ViT-B/16, 224 px, batch 64, 3 rounds; 1 when lighter) with each variant's
   images/s and the run's peak GPU memory, then ``entangle bench --memory`` on the device
   (each variant's ``max_memory_allocated`` above the fixture, ViT-S/16 112 px batch 32).
   ``--report`` and ``--scaling`` are left out: their t-SNE and report parts run on the CPU;
4. a benchmark-shaped run (:func:`entangle.bench.gpu_benchmark_run.benchmark_run`):
   ``entangle train``'s loop on a fake CUB-200-2011 tree it writes itself (random 224 px JPEGs
   in the published layout), ViT-B/16 from random init, EAGC with the probe on every step, 20
   steps under fp16 (GradScaler) and again under bf16 (10 steps when lighter): steady-state
   step time, their ratio, samples/s and peak GPU memory.

Before each part starts, the time left is compared with the part's estimated cost (``PARTS``,
:mod:`entangle.bench.time_budget`), keeping back the cheapest form of the parts after it: it
runs at its full settings when they fit, at lighter ones when those fit, and is skipped with a
printed note otherwise; the gpu-marked tests get the time left as their timeout. The verdict
line says the seconds used against the budget.

Everything printed also goes to the file ``--out`` names (default ``gpu_check.txt``), named
in the first and last lines. Runs from a plain checkout (``PYTHONPATH=. python3 -m
entangle.bench.gpu_check``): the tests need pytest and are skipped with a note without it;
the bench uses timm's ViT when timm is installed and entangle's own otherwise (said so).
Without a CUDA device it prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import subprocess
import sys
import time
from pathlib import Path

import torch

# the benches are called through their modules, so a test can plant their results
from entangle.bench import gpu_benchmark_run
from entangle.bench import memory as memory_bench
from entangle.bench import run as run_bench_module
from entangle.bench.time_budget import Part, Plan, TimeBudget
from entangle.eagc import EAGC
from entangle.errors import EntangleError
from entangle.gcd.losses import LossConfig, gcd_losses
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead
from entangle.probing.params import last_block
from entangle.probing.probe import Probe
from entangle.runs.io import open_append


def _tiny_step_parts(device: torch.device):
    torch.manual_seed(0)
    backbone = ResidualMLP(64, 64, 2).to(device)
    reference = ResidualMLP(64, 64, 2).to(device)
    head = GCDHead(64, 10, hidden_dim=64, proj_dim=32).to(device)
    views = torch.randn(128, 64, device=device)  # two views of 64 samples
    labels = torch.arange(64, device=device) % 10
    labeled1 = torch.arange(64, device=device) % 2 == 0
    labeled, novel = labeled1.repeat(2), ((labels >= 5) & ~labeled1).repeat(2)
    eagc = EAGC.fit(reference, [views[:64]], aperture=2.0)
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    probe = Probe({"last_block": last_block(backbone), "all": params}, every=2, eagc=eagc)
    opt = torch.optim.SGD(params, lr=0.01)
    return backbone, reference, head, views, labels, labeled1, labeled, novel, eagc, probe, opt


def probed_steps(device, *, dtype: torch.dtype | None, scaler: bool, strict: bool) -> dict:
    """Run a warm-up, a non-probed and a probed training step; return the transfer count.

    Args:
        device: where to run.
        dtype: autocast dtype (``torch.float16`` / ``torch.bfloat16``) or None for none.
        scaler: use a ``GradScaler`` (fp16).
        strict: under ``torch.cuda.set_sync_debug_mode("error")`` (CUDA only): a host sync
            in the step raises, except inside the allowed ``to_host`` transfer.
    """
    device = torch.device(device)
    parts = _tiny_step_parts(device)
    backbone, reference, head, views, labels, labeled1, labeled, novel, eagc, probe, opt = parts
    grad_scaler = torch.amp.GradScaler(device.type) if scaler else None
    transfers = []
    real = probe.transfer  # the probe's one host-sync point

    def allowed(tree):
        transfers.append(1)
        with _sync_mode("default" if strict else None):
            return real(tree)

    def step(probed: bool):
        probe.set_step(0 if probed else 1)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with _sync_mode("error" if strict else None):
            with autocast:
                z = eagc.coordinate(
                    backbone(views), labeled, reference(views).detach(), scaler=grad_scaler
                )
                proj, logits = head(z)
                sup, unsup, _ = gcd_losses(
                    proj, logits, labels, labeled1, epoch=0, config=LossConfig()
                )
            opt.zero_grad(set_to_none=True)
            probe.backward(
                sup,
                unsup,
                features=z,
                labeled=labeled,
                novel=novel,
                logits=logits,
                scaler=grad_scaler,
            )
        # the optimiser step is torch's (GradScaler.step reads found_inf on the host)
        if grad_scaler is not None:
            grad_scaler.step(opt)
            grad_scaler.update()
        else:
            opt.step()

    probe.transfer = allowed
    try:
        step(probed=True)  # warm-up: constants go to the device once
        transfers.clear()
        step(probed=False)
        non_probed = len(transfers)
        step(probed=True)
        probed = len(transfers) - non_probed
    finally:
        del probe.transfer  # back to the method
    return {"non_probed_transfers": non_probed, "probed_transfers": probed}


@contextlib.contextmanager
def _sync_mode(mode: str | None):
    if mode is None or not torch.cuda.is_available():
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def bench_modes(device, *, quick: bool = False, repeats: int = 3, say=print) -> dict:
    """``entangle bench`` and ``bench --memory`` on ``device``, printed and returned.

    Step ratios as ``entangle bench`` defines them (``repeats`` timed rounds after a warm-up;
    ViT-B/16 at 224 px, batch 64 on CUDA), images/s of each variant (two views per sample, so
    ``2 * batch`` images per step; the probe-set variants embed the probe set instead), the
    peak device memory of the timing run, and each variant's working memory above the
    fixture with its ratio to the plain step's (:func:`entangle.bench.memory.run_memory`).
    ``quick``: the bench's tiny models (tests, on a CPU).

    Returns:
        ``{"bench": run_bench's result, "images_per_s": {variant: float},
        "peak_memory_gib": float or None, "memory": run_memory's result}``.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    backend = run_bench_module.resolve_backend("auto")
    if backend == "builtin":
        say("note: timm is not installed; the bench uses entangle's own ViT")
    t = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    result = run_bench_module.run_bench(device=str(dev), repeats=repeats, quick=quick)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None
    settings = result["settings"]
    say(f"step ratios: {settings['model']}")
    say(f"  batch {settings['batch_size']}, {settings['rounds']} rounds, {settings['device']}")
    for key, value in result["ratios"].items():
        say(f"  {key:45s} {value:8.3f}")
    rows = {"vit": settings["vit"]["rows_per_step"], "mlp": settings["mlp"]["rows_per_step"]}
    probe_set = {"vit": settings["vit"]["probe_set_size"], "mlp": settings["mlp"]["probe_set_size"]}
    images = {}
    for name, ms in result["times_ms"].items():
        model = "mlp" if name.startswith("mlp_") else "vit"
        variant = name.removeprefix("mlp_")
        n = probe_set[model] if variant in ("probeset_soc", "full_reembed") else rows[model]
        images[name] = n / (ms / 1000.0) if ms > 0 else float("nan")
    say("images/s (rows per step / step time; the probe-set variants: probe-set rows)")
    for name, value in images.items():
        say(f"  {name:45s} {value:10.1f}")
    if peak is not None:
        say(f"peak GPU memory of the timing run: {peak:.2f} GiB")
    say(f"({time.perf_counter() - t:.0f} s)")
    t = time.perf_counter()
    memory = memory_bench.run_memory(device=str(dev), quick=quick)
    s = memory["settings"]
    say(f"working memory ({memory['method']})")
    say(f"  {s['model']} at {s['image_size']} px, batch {s['batch_size']}, {s['steps']} steps")
    for name, mb in memory["working_mb"].items():
        say(f"  {name:25s} {mb:9.1f} MB  {memory['vs_plain'][name]:6.2f}x plain")
    say(f"({time.perf_counter() - t:.0f} s)")
    return {"bench": result, "images_per_s": images, "peak_memory_gib": peak, "memory": memory}


class _Tee:
    """Write to the console and a file (the check's output file)."""

    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.file.write(text)
        return self.stream.write(text)

    def flush(self):
        self.file.flush()
        self.stream.flush()


# each part's estimated seconds on one H200-class GPU, at its full settings and its lighter
# ones: guesses, the split has not been measured on a GPU (docs/reliability.md); the default
# budget is their sum at full settings with a little to spare
PARTS = {
    "tests": Part("the gpu-marked tests", full_s=60),
    "steps": Part("the probed EAGC steps", full_s=20),
    "bench": Part(
        "the bench modes", full_s=90, light_s=45, light="1 timed bench round instead of 3"
    ),
    "run": Part(
        "the benchmark-shaped run",
        full_s=120,
        light_s=70,
        light="10 steps of batch 40 instead of 20 (2 training images per class, not 4)",
    ),
}
DEFAULT_BUDGET_S = 300.0
TITLES = {
    "tests": "gpu-marked tests (pytest -m gpu)",
    "steps": "probed EAGC steps, sync debug mode 'error' (fp16 + GradScaler, bf16)",
    "bench": "bench modes on the device (entangle bench, bench --memory)",
    "run": "benchmark-shaped run: fake CUB tree, ViT-B/16, EAGC + probe, fp16 / bf16",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entangle.bench.gpu_check", description=__doc__)
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    parser.add_argument("--skip-tests", action="store_true", help="skip the gpu-marked tests")
    parser.add_argument("--skip-bench", action="store_true", help="skip entangle bench")
    parser.add_argument(
        "--skip-run", action="store_true", help="skip the benchmark-shaped training run"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds for the whole check (default {DEFAULT_BUDGET_S:.0f}); a part that "
        "would not fit runs lighter or is skipped, with a note",
    )
    parser.add_argument(
        "--out", default="gpu_check.txt", help="file for a copy of the output (gpu_check.txt)"
    )
    args = parser.parse_args(argv)
    if not args.budget_s > 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s}")
    if not torch.cuda.is_available():
        print("error: no CUDA device here; run python -m entangle.bench.gpu_check on a GPU machine")
        return 2
    out = Path(args.out)
    try:  # the audited primitive: a symlink at --out is refused, never written through
        handle = open_append(out)
    except EntangleError as exc:
        print(f"error: {exc}")
        return 2
    handle.truncate(0)  # an earlier check's copy is replaced (appends go to the new end)
    with (
        io.TextIOWrapper(handle, encoding="utf-8", line_buffering=True) as file,
        contextlib.redirect_stdout(_Tee(sys.stdout, file)),
    ):
        print(f"output: {out.resolve()}")
        code = _checks(args)
        print(f"output written to {out.resolve()}")
    return code


def _checks(args) -> int:
    """The four parts in order, each planned against the one budget before it starts."""
    budget = TimeBudget(args.budget_s, time.perf_counter)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(args.device)}")
    print(f"time budget: {budget.total_s:.0f} s (--budget-s)")
    keys = [k for k in PARTS if not getattr(args, f"skip_{k}", False)]
    if "tests" in keys and importlib.util.find_spec("pytest") is None:
        _section(TITLES["tests"])
        print("skipped: pytest is not installed here (pip install pytest to run them)")
        keys.remove("tests")
    runners = {"tests": _gpu_tests, "steps": _strict_steps, "bench": _bench, "run": _run}
    failures: list[str] = []
    skipped: list[str] = []
    for i, key in enumerate(keys):
        _section(TITLES[key])
        t = budget.clock()
        plan = budget.plan(PARTS[key], [PARTS[k] for k in keys[i + 1 :]])
        print(plan.note, flush=True)
        if plan.runs:
            failures += runners[key](args, plan)
            print(f"({budget.clock() - t:.0f} s)")
        else:
            skipped.append(PARTS[key].name)
    passed = "all GPU checks that ran passed" if skipped else "all GPU checks passed"
    verdict = "FAILED: " + ", ".join(failures) if failures else passed
    if skipped:
        verdict += f" (skipped, no time left in the budget: {', '.join(skipped)})"
    print(f"\n{verdict}; {budget.summary()}")
    return 1 if failures else 0


def _gpu_tests(args, plan: Plan) -> list[str]:
    root = Path(__file__).resolve().parents[2]  # the checkout (entangle/bench/..)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(root / "tests")],
            cwd=root,
            timeout=plan.allowed_s,  # this part's share of the budget
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"FAILED: the tests were still running after {plan.allowed_s:.0f} s, stopped")
        return ["gpu-marked tests (timed out)"]
    return [] if done.returncode == 0 else ["gpu-marked tests"]


def _strict_steps(args, plan: Plan) -> list[str]:
    failures = []
    for label, dtype, scaler in (
        ("fp16 autocast + GradScaler", torch.float16, True),
        ("bf16 autocast", torch.bfloat16, False),
    ):
        try:
            counts = probed_steps(args.device, dtype=dtype, scaler=scaler, strict=True)
        except RuntimeError as exc:  # set_sync_debug_mode("error") raises RuntimeError
            failures.append(f"host sync in the step ({label})")
            print(f"{label}: FAILED: {str(exc).splitlines()[0]}")
        else:
            ok = counts == {"non_probed_transfers": 0, "probed_transfers": 1}
            if not ok:
                failures.append(f"transfer budget ({label})")
            print(f"{label}: {'ok' if ok else 'FAILED'}: {counts}")
    return failures


def _bench(args, plan: Plan) -> list[str]:
    try:
        bench_modes(args.device, repeats=1 if plan.mode == "light" else 3)
    except (EntangleError, RuntimeError) as exc:  # e.g. CUDA out of memory
        print(f"FAILED: {str(exc).splitlines()[0]}")
        return ["bench modes"]
    return []


def _run(args, plan: Plan) -> list[str]:
    try:
        if plan.mode == "light":
            gpu_benchmark_run.benchmark_run(args.device, light=True)
        else:
            gpu_benchmark_run.benchmark_run(args.device)
    except (EntangleError, RuntimeError) as exc:  # e.g. CUDA out of memory
        print(f"FAILED: {str(exc).splitlines()[0]}")
        return ["benchmark-shaped run"]
    return []


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EntangleError as exc:
        print(f"error: {exc}")
        sys.exit(2)
