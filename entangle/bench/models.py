"""What ``entangle bench`` times: the bench models and one fixture holding every variant.

A :class:`BenchSpec` gives a model's sizes (:func:`vit_spec` per device, :func:`mlp_spec` for
the digits MLP); a :class:`BenchFixture` builds it once, with its optimiser, batches, probe
set, reference model and EAGC, and offers each timed variant as a method, so all variants
share the same weights and batches. The timing and the ratios live in :mod:`entangle.bench.run`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from entangle.coordination import CoordinatorConfig, GradientCoordinator
from entangle.eagc import EAGC
from entangle.errors import EntangleValueError
from entangle.gcd.losses import gcd_losses
from entangle.metrics import gradient_conflict, soc
from entangle.models.backbones import build_backbone, freeze_prefix
from entangle.models.heads import build_head
from entangle.models.vit import VIT_CONFIGS, build_vit
from entangle.nn.prefix import SharedPrefix
from entangle.probing.params import last_block
from entangle.probing.probe import Probe
from entangle.probing.probeset import ProbeSet, full_embedding, summarize_subspace

# rows the memory bench's subsample variant attributes per step (of the batch's 2 x batch)
ATTRIBUTION_ROWS = 8


@dataclass
class BenchSpec:
    """What one bench model is made of (sizes only; built by :class:`BenchFixture`)."""

    name: str
    description: str
    backbone: Callable[[], torch.nn.Module]
    head: str
    num_classes: int
    input_shape: tuple[int, ...]
    batch_size: int
    probe_set_size: int


def vit_spec(
    backend: str,
    batch_size: int | None,
    quick: bool,
    probe_set: int | None,
    image_size: int | None,
    device: torch.device,
) -> BenchSpec:
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
    return BenchSpec(
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


def mlp_spec(batch_size: int | None, quick: bool, probe_set: int | None) -> BenchSpec:
    dim, depth = (32, 3) if quick else (128, 4)
    return BenchSpec(
        name="mlp",
        description=f"digits MLP: D={dim}, depth={depth}, 64 inputs, last block trainable",
        backbone=lambda: build_backbone("digits-mlp", in_dim=64, dim=dim, depth=depth),
        head="tiny",
        num_classes=10,
        input_shape=(64,),
        batch_size=batch_size or (16 if quick else 128),
        probe_set_size=probe_set or (48 if quick else 1024),
    )


class BenchFixture:
    """One model, its optimiser, batches, probe set, reference and EAGC, shared by variants."""

    def __init__(self, spec: BenchSpec, device: torch.device, seed: int = 0):
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
        self.probe_attribution = Probe({"last_block": self.probed}, every=1, attribution=True)
        # the cheaper mode: a seeded subsample of rows, one per-row backward each
        self.probe_attribution_rows = Probe(
            {"last_block": self.probed}, attribution=True, attribution_rows=ATTRIBUTION_ROWS
        )
        self.coordinators = _coordinators(self.params)

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
        with probe.attribution_forward():
            z = self.backbone(batch["views"])
        sup, unsup, logits = self.losses(z, batch)
        self.opt.zero_grad(set_to_none=True)
        # targets only matter to the attribution (class sums); the other probes ignore them
        targets = batch["labels"].repeat(2)
        probe.backward(
            sup, unsup, features=z, labeled=batch["labeled2"], logits=logits, targets=targets
        )
        self.opt.step()
        probe.records.clear()  # keep memory flat over many timed steps

    def probe_window(self) -> None:
        """Ten steps, the first probed: one ``every=10`` period."""
        self.probe_every_10.set_step(0)
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

    def coordinated(self, coordinator) -> None:
        """A training step whose backward is a gradient-level coordinator's (no probe)."""
        batch = self.next_batch()
        sup, unsup, _ = self.losses(self.backbone(batch["views"]), batch)
        self.opt.zero_grad(set_to_none=True)
        coordinator.backward(sup, unsup)
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
            "probe_attribution": (lambda: self.probe_step(self.probe_attribution), 1),
            "paper_diagnostics": (self.paper_diagnostics, 1),
            "probeset_soc": (self.probeset_soc, 1),
            "full_reembed": (self.full_reembed, 1),
            "eagc_shared_prefix": (self.eagc_shared_prefix, 1),
            "eagc_separate_reference": (self.eagc_separate_reference, 1),
        } | {
            f"coordinator_{name}": (lambda c=c: self.coordinated(c), 1)
            for name, c in self.coordinators.items()
        }

    def memory_variants(self) -> dict[str, tuple[Callable[[], object], int]]:
        """:meth:`variants` and the attribution of a row subsample (memory bench only)."""
        rows = (lambda: self.probe_step(self.probe_attribution_rows), 1)
        return self.variants() | {"probe_attribution_rows": rows}

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


# the gradient-level coordinators the bench times (the example grid's; [mtl] extra)
BENCH_COORDINATORS = ("pcgrad", "cagrad", "upgrad", "mgda", "imtlg", "alignedmtl", "nashmtl")


def _coordinators(params) -> dict:
    """name -> GradientCoordinator on ``params``; empty without torchjd (the bench says so)."""
    try:
        import torchjd  # noqa: F401  (optional: the [mtl] extra)
    except ImportError:
        return {}
    return {n: GradientCoordinator(params, CoordinatorConfig(n)) for n in BENCH_COORDINATORS}
