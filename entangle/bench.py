"""Step-time ratios of the probe, paper-style diagnostics and EAGC, measured side by side.

Every claim about entangle's cost is a ratio of two variants timed in ONE process on the same
model, weights and batches (DESIGN.md §4). The variants run round-robin (the order rotates
each round) after warm-up, so load from other processes hits all of them alike; a ratio is
the median over rounds of the per-round ratio, and ``ratios_iqr`` gives its spread. On a CPU
shared with other jobs, run with one thread (more threads than free cores spin and wait) and,
for the least noise, ``clock="cpu"`` (process CPU time, which excludes time spent descheduled).

Ratio keys (``mlp_`` prefix: the same for the digits MLP):

- ``probe_every_step_vs_plain``: step with ``Probe(every=1)`` / plain step (>= 1, lower is
  better; target <= 1.25 for the last-block ViT).
- ``probe_every_10_vs_plain``: mean step of a 10-step window with ``Probe(every=10)`` / plain
  step (target <= 1.03).
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
"""

from __future__ import annotations

import copy
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from entangle.eagc import EAGC
from entangle.errors import EntangleValueError
from entangle.gcd.backbones import build_backbone, freeze_prefix
from entangle.gcd.heads import build_head
from entangle.gcd.losses import gcd_losses
from entangle.metrics import gradient_conflict, soc
from entangle.params import last_block
from entangle.prefix import SharedPrefix
from entangle.probe import Probe
from entangle.probeset import ProbeSet, full_embedding, summarize_subspace

# ratio key -> (comparison, bound): the targets of the Probe and EAGC issues (ViT only)
TARGETS: dict[str, tuple[str, float]] = {
    "probe_every_step_vs_plain": ("<=", 1.25),
    "probe_every_10_vs_plain": ("<=", 1.03),
    "probeset_soc_vs_full_reembed": (">=", 8.0),
    "eagc_shared_prefix_vs_plain": ("<=", 1.10),
}

# (variant, baseline, ratio key): per-round time of variant / time of baseline; the SOC entry
# puts full re-embedding over ProbeSet, so it reads as a speed-up (higher is faster)
_RATIOS = (
    ("probe_every_step", "plain", "probe_every_step_vs_plain"),
    ("probe_every_10", "plain", "probe_every_10_vs_plain"),
    ("paper_diagnostics", "plain", "paper_diagnostics_vs_plain"),
    ("full_reembed", "probeset_soc", "probeset_soc_vs_full_reembed"),
    ("eagc_shared_prefix", "plain", "eagc_shared_prefix_vs_plain"),
    ("eagc_separate_reference", "plain", "eagc_separate_reference_vs_plain"),
)


@dataclass
class _Spec:
    """What one bench model is made of (sizes only; built by :func:`_build`)."""

    name: str
    description: str
    backbone: Callable[[], torch.nn.Module]
    head: str
    num_classes: int
    input_shape: tuple[int, ...]
    batch_size: int
    probe_set_size: int


def _vit_spec(
    backend: str,
    batch_size: int | None,
    quick: bool,
    probe_set: int | None,
    image_size: int | None,
    device: torch.device,
) -> _Spec:
    from entangle.gcd.vit import VIT_CONFIGS, build_vit

    # sizes per device: on a GPU SimGCD's own ViT-B/16 at 224 px; on a CPU ViT-S/16 (the real
    # 12-block structure, one trainable block) at 64 px, 4 x 4 patches + CLS, so the whole
    # bench fits in a minute or two on two cores; a tiny test config for quick runs
    if quick:
        name, img, batch, probe = "vit-tiny-test", 32, 8, 48
    elif device.type == "cuda":
        name, img, batch, probe = "vit-b16", 224, 64, 2048
    else:
        name, img, batch, probe = "vit-s16", 64, 8, 256
    cfg = VIT_CONFIGS[name]
    img = image_size or img
    if img % cfg.patch_size:
        raise EntangleValueError(
            f"image_size {img} is not a multiple of the patch size {cfg.patch_size}"
        )
    tokens = (img // cfg.patch_size) ** 2 + 1
    return _Spec(
        name="vit",
        description=(
            f"{name} ({backend}): D={cfg.embed_dim}, depth={cfg.depth}, heads={cfg.num_heads}, "
            f"patch {cfg.patch_size}, {img}px ({tokens} tokens), last block trainable, "
            f"{'tiny' if quick else 'SimGCD'} head"
        ),
        backbone=lambda: build_vit(name, img_size=img, backend=backend),
        head="tiny" if quick else "simgcd",
        num_classes=10 if quick else 100,
        input_shape=(3, img, img),
        batch_size=batch_size or batch,
        probe_set_size=probe_set or probe,
    )


def _mlp_spec(batch_size: int | None, quick: bool, probe_set: int | None) -> _Spec:
    dim, depth = (32, 3) if quick else (128, 4)
    return _Spec(
        name="mlp",
        description=f"digits MLP: D={dim}, depth={depth}, 64 inputs, last block trainable",
        backbone=lambda: build_backbone("digits-mlp", in_dim=64, dim=dim, depth=depth),
        head="tiny",
        num_classes=10,
        input_shape=(64,),
        batch_size=batch_size or (16 if quick else 128),
        probe_set_size=probe_set or (48 if quick else 1024),
    )


class _Fixture:
    """One model, its optimiser, batches, probe set, reference and EAGC, shared by variants."""

    def __init__(self, spec: _Spec, device: torch.device, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.spec, self.device = spec, device
        self.backbone = spec.backbone().to(device)
        freeze_prefix(self.backbone, 1)
        self.head = build_head(spec.head, self.backbone.feature_dim, spec.num_classes).to(device)
        self.params = [
            p for m in (self.backbone, self.head) for p in m.parameters() if p.requires_grad
        ]
        # a small step size: weights move (as in training) but never blow up to NaN/denormals
        self.opt = torch.optim.SGD(self.params, lr=1e-4, momentum=0.9)
        self.probed = last_block(self.backbone)
        old = spec.num_classes // 2
        self.batches = [self._batch(g, old) for _ in range(4)]
        self.calls = 0

        n = spec.probe_set_size
        self.probe_inputs = torch.randn(n, *spec.input_shape, generator=g)
        self.probe_labeled = torch.arange(n) % 2 == 0
        self.probe_novel = (torch.arange(n) % 4 == 1) & ~self.probe_labeled
        # SOC and principal angles need k below the rank of both sets
        self.k = min(16, int(self.probe_labeled.sum()) - 1, int(self.probe_novel.sum()) - 1)
        self.probeset = ProbeSet(
            self.backbone, self.probe_inputs, self.probe_labeled, self.probe_novel, k=self.k
        )

        # reference model: same frozen prefix (bit-identical), a perturbed last block
        self.reference = copy.deepcopy(self.backbone)
        with torch.no_grad():
            for p in self.reference.blocks[-1].parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g).to(device))
        self.reference.eval().requires_grad_(False)
        labeled_inputs = self.probe_inputs[self.probe_labeled].to(device)
        self.eagc = EAGC.fit(self.reference, list(labeled_inputs.split(spec.batch_size)))
        self.shared = SharedPrefix(self.backbone, self.reference)
        self.probe_every_step = Probe({"last_block": self.probed}, every=1)
        self.probe_every_10 = Probe({"last_block": self.probed}, every=10)

    def _batch(self, g: torch.Generator, old_classes: int) -> dict:
        b = self.spec.batch_size
        labeled = torch.arange(b) % 2 == 0
        labels = torch.randint(0, self.spec.num_classes, (b,), generator=g)
        labels = torch.where(labeled, labels % old_classes, labels)
        views = torch.randn(2 * b, *self.spec.input_shape, generator=g)
        out = {"views": views, "labels": labels, "labeled": labeled}
        out = {k: v.to(self.device) for k, v in out.items()}
        out["labeled2"] = out["labeled"].repeat(2)
        return out

    def next_batch(self) -> dict:
        self.calls += 1
        return self.batches[self.calls % len(self.batches)]

    def losses(self, z: torch.Tensor, batch: dict):
        proj, logits = self.head(z)
        sup, unsup, _ = gcd_losses(proj, logits, batch["labels"], batch["labeled"], epoch=0)
        return sup, unsup, logits

    # ------------------------------------------------------------------ the variants
    def plain(self) -> None:
        batch = self.next_batch()
        sup, unsup, _ = self.losses(self.backbone(batch["views"]), batch)
        self.opt.zero_grad(set_to_none=True)
        (sup + unsup).backward()
        self.opt.step()

    def probe_step(self, probe: Probe) -> None:
        batch = self.next_batch()
        z = self.backbone(batch["views"])
        sup, unsup, logits = self.losses(z, batch)
        self.opt.zero_grad(set_to_none=True)
        probe.backward(sup, unsup, features=z, labeled=batch["labeled2"], logits=logits)
        self.opt.step()
        probe.records.clear()  # keep memory flat over many timed steps

    def probe_window(self) -> None:
        """Ten steps, the first probed: one ``every=10`` period."""
        self.probe_every_10.calls = 0
        for _ in range(10):
            self.probe_step(self.probe_every_10)

    def paper_diagnostics(self) -> None:
        batch = self.next_batch()
        sup, unsup, _ = self.losses(self.backbone(batch["views"]), batch)
        g_sup = torch.autograd.grad(sup, self.probed, retain_graph=True)
        g_unsup = torch.autograd.grad(unsup, self.probed, retain_graph=True)
        self.opt.zero_grad(set_to_none=True)
        (sup + unsup).backward()
        self.opt.step()
        stats = gradient_conflict(g_sup, g_unsup, warn=False)
        z = full_embedding(self.backbone, self.probe_inputs)
        value = soc(z[self.probe_labeled.to(z.device)], z[self.probe_novel.to(z.device)], self.k)
        # one host sync, as a logger would do
        torch.stack([stats["cos"], stats["gdc"], value.to(stats["cos"].dtype)]).tolist()

    def eagc_shared_prefix(self) -> None:
        batch = self.next_batch()
        z, z_ref = self.shared(batch["views"])
        z = self.eagc.coordinate(z, batch["labeled2"], z_ref)
        self._eagc_rest(z, batch)

    def eagc_separate_reference(self) -> None:
        batch = self.next_batch()
        z = self.backbone(batch["views"])
        with torch.no_grad():
            z_ref = self.reference(batch["views"])
        z = self.eagc.coordinate(z, batch["labeled2"], z_ref)
        self._eagc_rest(z, batch)

    def _eagc_rest(self, z: torch.Tensor, batch: dict) -> None:
        sup, unsup, _ = self.losses(z, batch)
        self.opt.zero_grad(set_to_none=True)
        (sup + unsup).backward()
        self.opt.step()

    def probeset_soc(self) -> float:
        return self.probeset.evaluate(self.backbone)["soc"]

    def full_reembed(self) -> float:
        z = full_embedding(self.backbone, self.probe_inputs).float()
        lab, nov = self.probe_labeled.to(z.device), self.probe_novel.to(z.device)
        return summarize_subspace(z, lab, nov, self.k, self.probeset.aperture)["soc"]

    def soc_difference(self) -> float:
        """|SOC(ProbeSet) - SOC(full re-embedding)| on the current weights."""
        return abs(self.probeset_soc() - self.full_reembed())

    def variants(self) -> dict[str, tuple[Callable[[], object], int]]:
        """name -> (callable, steps per call): per-step time = call time / steps."""
        return {
            "plain": (self.plain, 1),
            "probe_every_step": (lambda: self.probe_step(self.probe_every_step), 1),
            "probe_every_10": (self.probe_window, 10),
            "paper_diagnostics": (self.paper_diagnostics, 1),
            "probeset_soc": (self.probeset_soc, 1),
            "full_reembed": (self.full_reembed, 1),
            "eagc_shared_prefix": (self.eagc_shared_prefix, 1),
            "eagc_separate_reference": (self.eagc_separate_reference, 1),
        }

    def dims(self) -> dict:
        trainable = sum(p.numel() for p in self.params)
        return {
            "feature_dim": int(self.backbone.feature_dim),
            "blocks": len(self.backbone.blocks),
            "num_classes": self.spec.num_classes,
            "rows_per_step": 2 * self.spec.batch_size,
            "probed_parameters": sum(p.numel() for p in self.probed),
            "trainable_parameters": trainable,
            "probe_set_size": self.spec.probe_set_size,
            "soc_k": self.k,
        }


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
    from entangle.gcd.train import resolve_device

    dev = resolve_device(device)
    backend = resolve_backend(model)
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
    timer = time.perf_counter if clock == "wall" else time.process_time
    specs = (
        _vit_spec(backend, batch_size, quick, probe_set_size, image_size, dev),
        _mlp_spec(batch_size, quick, probe_set_size),
    )
    if threads is None and quick:
        threads = 1
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise EntangleValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

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
            prefix = "" if spec.name == "vit" else f"{spec.name}_"
            say(f"{spec.name}: {spec.description}")
            fixture = _Fixture(spec, dev)
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
            settings[spec.name] = {
                "model": spec.description,
                "batch_size": spec.batch_size,
                "input_shape": list(spec.input_shape),
                **fixture.dims(),
            }
    finally:
        torch.set_num_threads(previous_threads)
    settings["model"] = settings["vit"]["model"]
    settings["batch_size"] = settings["vit"]["batch_size"]
    settings["image_size"] = settings["vit"]["input_shape"][-1]
    settings["load_average_after"] = _load()
    result["settings"] = settings
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
