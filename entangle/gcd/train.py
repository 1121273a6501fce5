"""The GCD recipe's training loop: one readable loop with a Probe and optional EAGC.

``prepare(config)`` builds the data, the (pretrained, prefix-frozen) backbone and a fresh
head; ``train(config, run_dir, setup)`` trains from exactly those weights, so a baseline and
an EAGC run made from the same ``Setup`` start from identical weights (the reference code
compares runs from different starts, DESIGN.md §3 defect 4).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from entangle.checkpoints import save_checkpoint as save_model_checkpoint
from entangle.eagc import EAGC
from entangle.errors import EntangleValueError
from entangle.gcd.augment import default_augment
from entangle.gcd.backbones import build_backbone, freeze_prefix
from entangle.gcd.data import BalancedBatchSampler, GCDData, eval_inputs, load_source, make_batch
from entangle.gcd.heads import build_head
from entangle.gcd.losses import LossConfig, gcd_losses
from entangle.metrics import cluster_accuracy, knn_overlap
from entangle.modes import eval_mode
from entangle.params import last_block
from entangle.prefix import SharedPrefix
from entangle.probe import Probe
from entangle.probeset import ProbeSet, summarize_subspace
from entangle.reference import train_reference
from entangle.runs import RunReader, RunWriter


@dataclass
class TrainConfig:
    """Every setting of a GCD training run (stored in run.json)."""

    data: str = "digits"
    old_classes: str | None = None
    labeled_fraction: float = 0.5
    model: str = "digits-mlp"
    pretrained: str | None = None
    pretrain_epochs: int = 30
    trainable_blocks: int = 1
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    sup_weight: float = 0.35
    memax_weight: float = 2.0
    warmup_teacher_epochs: int = 5
    eagc: bool = False
    aga: bool = True
    eep: bool = True
    adaptive: bool = True
    aga_weight: float = 0.7
    eep_weight: float = 0.5
    aperture: float = 2.0
    momentum_mu: float = 0.95
    reference: str | None = None
    reference_epochs: int = 30
    probe_every: int = 1
    probeset_every: int = 10
    probeset_size: int = 512
    soc_k: int = 16
    device: str = "auto"
    seed: int = 0
    save_features: bool = True
    synthetic_overlap: float = 0.5

    def __post_init__(self):
        if not 0 < self.labeled_fraction <= 1:
            raise EntangleValueError(
                f"labeled_fraction must be in (0, 1], got {self.labeled_fraction}"
            )
        for name in ("epochs", "probe_every", "probeset_every"):
            if getattr(self, name) < 1:
                raise EntangleValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise EntangleValueError(
                f"batch_size must be >= 2 (half labeled, half unlabeled rows), got "
                f"{self.batch_size}"
            )

    def variant(self) -> str:
        """Short name of the EAGC variant: baseline, aga, eep, eagc or eagc-fixed."""
        if not self.eagc or not (self.aga or self.eep):
            return "baseline"
        if self.aga and not self.eep:
            return "aga"
        if self.eep and not self.aga:
            return "eep" if self.adaptive else "eep-fixed"
        return "eagc" if self.adaptive else "eagc-fixed"


# settings that say where a run executes, not what it computes: a run may resume elsewhere
PLACEMENT_FIELDS = ("device",)


def config_differences(stored: dict, config: TrainConfig) -> list[str]:
    """Fields whose value in a run's stored config differs from ``config`` (placement aside)."""
    want = json.loads(json.dumps(dataclasses.asdict(config)))
    keys = (set(stored) | set(want)) - set(PLACEMENT_FIELDS) - {"class_names"}
    return sorted(k for k in keys if stored.get(k) != want.get(k))


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Setup:
    """Data and initial weights shared by the runs of one experiment."""

    data: GCDData
    backbone: torch.nn.Module
    head: torch.nn.Module
    device: torch.device
    reference: tuple[torch.nn.Module, torch.nn.Module] | None = None


def prepare(config: TrainConfig, *, progress: Callable[[str, int, float], None] | None = None):
    """Load data, build and pretrain the backbone (digits), freeze its prefix, build the head.

    Args:
        config: the run settings.
        progress: ``progress(stage, epoch, loss)`` for display.

    Returns:
        :class:`Setup` with the weights every run of this experiment starts from.
    """
    device = resolve_device(config.device)
    extra = {"overlap": config.synthetic_overlap} if config.data == "synthetic" else {}
    data = load_source(
        config.data,
        old_classes=config.old_classes,
        labeled_fraction=config.labeled_fraction,
        seed=config.seed,
        **extra,
    )
    torch.manual_seed(config.seed)
    kwargs = {}
    if config.model == "digits-mlp" and data.input_kind == "vector":
        kwargs["in_dim"] = int(data.x.shape[1])
    if config.model.startswith("vit-") and config.pretrained:
        kwargs["pretrained"] = config.pretrained
    backbone = build_backbone(config.model, **kwargs).to(device)
    if config.model == "digits-mlp":
        if config.pretrained:
            _load_into(backbone, config.pretrained, "backbone")
        elif config.pretrain_epochs and data.in_memory:
            # the embedded model starts from self-supervised features, as GCD starts from DINO
            from entangle.gcd.pretrain import pretrain_backbone

            pretrain_backbone(
                backbone,
                data.x,
                epochs=config.pretrain_epochs,
                batch_size=256,
                lr=3e-3,
                seed=config.seed,
                device=device,
                augment=default_augment(data.input_kind),
                progress=(lambda e, loss: progress("pretrain", e, loss)) if progress else None,
            )
    freeze_prefix(backbone, config.trainable_blocks)
    head_name = "simgcd" if config.model.startswith("vit-") else "tiny"
    head = build_head(head_name, backbone.feature_dim, data.num_classes).to(device)
    return Setup(data, backbone, head, device)


def _state_dict_from(path: str, part: str) -> dict:
    """The ``part`` ("backbone" / "head") state dict of a checkpoint, or a plain state dict.

    Loaded safely (weights only); a missing file, another layout or a model of another shape
    becomes one clear EntangleValueError.
    """
    from entangle.checkpoints import safe_load

    obj = safe_load(path)
    if isinstance(obj, dict) and isinstance(obj.get(part), dict):
        return obj[part]
    if (
        part == "backbone"
        and isinstance(obj, dict)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        return obj
    keys = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj).__name__
    raise EntangleValueError(
        f"{path}: expected an entangle checkpoint with a {part!r} state dict (e.g. "
        f"RUN/checkpoints/model.pt) or a plain backbone state dict; found {keys}"
    )


def _load_into(module: torch.nn.Module, path: str, part: str) -> None:
    try:
        module.load_state_dict(_state_dict_from(path, part))
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise EntangleValueError(f"{path}: its {part} does not fit this model: {exc}") from exc


def _labeled_loader(data: GCDData, batch_size: int, device, augment, seed: int):
    """A re-iterable list of augmented labeled batches ``(x, y)`` (one view per sample)."""
    idx = torch.nonzero(data.labeled).flatten()
    g = torch.Generator().manual_seed(seed)
    order = idx[torch.randperm(idx.numel(), generator=g)]
    batches = []
    for start in range(0, order.numel(), batch_size):
        rows = order[start : start + batch_size]
        x = eval_inputs(data, rows)
        if augment is not None and data.in_memory:
            x = augment(x, g)
        batches.append((x.to(device), data.labels[rows].to(device)))
    return batches


def ensure_reference(config: TrainConfig, setup: Setup, progress=None):
    """The frozen reference model (loaded from ``config.reference`` or trained on labeled data)."""
    if setup.reference is not None:
        return setup.reference
    backbone, head = setup.backbone, setup.head
    if config.reference:
        ref_b, ref_h = copy.deepcopy(backbone), copy.deepcopy(head)
        _load_into(ref_b, config.reference, "backbone")
        _load_into(ref_h, config.reference, "head")
        for m in (ref_b, ref_h):
            m.eval().requires_grad_(False)
    else:
        augment = default_augment(setup.data.input_kind) if setup.data.in_memory else None
        loader = _labeled_loader(setup.data, config.batch_size, setup.device, augment, config.seed)
        ref_b, ref_h = train_reference(
            backbone,
            head,
            loader,
            epochs=config.reference_epochs,
            lr=config.lr,
            device=setup.device,
            on_epoch=(lambda e, loss: progress("reference", e, loss)) if progress else None,
        )
    setup.reference = (ref_b, ref_h)
    return setup.reference


def evaluate(backbone, head, data: GCDData, device, batch_size: int = 512) -> dict:
    """Features of every sample, v2 clustering accuracy on the unlabeled set, SOC, energies.

    Returns:
        ``(record, arrays)``: the epoch record and the arrays to save in features/.
    """
    feats, logits = [], []
    with eval_mode(backbone, head), torch.inference_mode():
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            z = backbone(eval_inputs(data, rows).to(device))
            feats.append(z.float())
            logits.append(head(z)[1].float())
    z, logit = torch.cat(feats), torch.cat(logits)
    unl = ~data.labeled
    labels = data.labels
    pred = logit.argmax(1).cpu()
    old_mask = ~data.novel[unl]
    acc_all, acc_old, acc_new = cluster_accuracy(labels[unl], pred[unl], old_mask)
    record = {"acc_all": acc_all, "acc_old": acc_old, "acc_new": acc_new}
    lab, nov = data.labeled.to(z.device), (data.novel & unl).to(z.device)
    record.update(summarize_subspace(z, lab, nov))
    record["knn_overlap"] = knn_overlap(z[unl.to(z.device)], data.novel[unl], k=10)
    arrays = {
        "features": z.cpu(),
        "labels": labels,
        "labeled": data.labeled,
        "novel": data.novel,
        "logits": logit.cpu(),
    }
    return record, arrays


def _probe_subset(data: GCDData, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 7)
    return torch.randperm(len(data), generator=g)[: min(size, len(data))]


def train(
    config: TrainConfig,
    run_dir,
    setup: Setup | None = None,
    *,
    name: str | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """Train one GCD run, probing every ``config.probe_every`` steps; resumable.

    Args:
        config: the settings.
        run_dir: the run directory; an unfinished run there is resumed from its last
            checkpoint (records of the abandoned tail are superseded step by step).
        setup: data and initial weights (``prepare(config)`` when None); not modified.
        name: display name of the run.
        on_epoch: called with ``(epoch, epoch_record)`` after each evaluation.
        on_step: called with ``(step, steps_total)`` after each optimiser step.

    Returns:
        the summary written to DONE (last epoch's accuracies, mean conflict, GDC, SOC).
    """
    setup = setup or prepare(config)
    run_dir = Path(run_dir)
    resume = (run_dir / "run.json").exists()
    if resume:
        differ = config_differences(RunReader(run_dir).config or {}, config)
        if differ:
            raise EntangleValueError(
                f"{run_dir} holds a run started with other settings ({', '.join(differ)} "
                "differ); resume it with the same settings or choose another run directory"
            )
    run = RunWriter(
        run_dir,
        config=dataclasses.asdict(config) | {"class_names": setup.data.class_names},
        seed=config.seed,
        device=str(setup.device),
        name=name,
        resume=resume,
    )
    with run:  # closes the record files if training raises; DONE only on success
        return _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step)


def _train_loop(config, setup, run, run_dir, resume, on_epoch, on_step) -> dict:
    device, data = setup.device, setup.data
    backbone, head = copy.deepcopy(setup.backbone), copy.deepcopy(setup.head)
    eagc = reference = shared = None
    if config.eagc:
        reference = ensure_reference(config, setup)
        loader = _labeled_loader(data, config.batch_size, device, None, config.seed)
        eagc = EAGC.fit(
            reference[0],
            [x for x, _ in loader],
            aperture=config.aperture,
            aga_weight=config.aga_weight,
            eep_weight=config.eep_weight,
            momentum=config.momentum_mu,
            aga=config.aga,
            eep=config.eep,
            adaptive=config.adaptive,
        )
        shared = SharedPrefix(backbone, reference[0])
        if not run.checkpoint_path("reference").exists():
            save_model_checkpoint(
                run.checkpoint_path("reference"), *reference, meta={"role": "reference"}
            )
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    sampler = BalancedBatchSampler(data.labeled, config.batch_size, seed=config.seed)
    steps_per_epoch = len(sampler)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * steps_per_epoch)
    loss_config = LossConfig(
        sup_weight=config.sup_weight,
        memax_weight=config.memax_weight,
        warmup_teacher_epochs=config.warmup_teacher_epochs,
    )
    probe = Probe(
        {"last_block": last_block(backbone), "all": params},
        every=config.probe_every,
        run=run,
        eagc=eagc,
    )
    subset = _probe_subset(data, config.probeset_size, config.seed)
    probeset = ProbeSet(
        backbone,
        eval_inputs(data, subset),
        data.labeled[subset],
        data.novel[subset],
        every=config.probeset_every,
        k=min(config.soc_k, int(data.labeled[subset].sum()) - 1),
        aperture=config.aperture,
    )
    augment = default_augment(data.input_kind)

    start_epoch = 0
    last_ckpt = run.checkpoint_path("last")
    if resume and last_ckpt.exists():
        state = torch.load(last_ckpt, map_location=device, weights_only=True)
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if eagc is not None:
            eagc.load_state_dict(state["eagc"])
        start_epoch = int(state["epoch"]) + 1

    for epoch in range(start_epoch, config.epochs):
        backbone.train()
        head.train()
        sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
        for i, rows in enumerate(sampler):
            step = epoch * steps_per_epoch + i
            probe.calls = step  # keeps `every` and record steps aligned across resumes
            probe.epoch = epoch
            batch = make_batch(data, rows, augment, generator)
            views = batch["views"].to(device)
            labeled = batch["labeled"].to(device)
            labeled2 = labeled.repeat(2)
            novel2 = batch["novel"].to(device).repeat(2)
            extra = None
            if probeset.is_due(step):
                extra = {"probeset": probeset.evaluate(backbone)}
            if shared is not None:
                z, z_ref = shared(views)
                z = eagc.coordinate(z, labeled2, z_ref)
            else:
                z = backbone(views)
            proj, logits = head(z)
            sup, unsup, _ = gcd_losses(
                proj, logits, batch["labels"].to(device), labeled, epoch=epoch, config=loss_config
            )
            opt.zero_grad(set_to_none=True)
            probe.backward(
                sup,
                unsup,
                features=z,
                labeled=labeled2,
                novel=novel2,
                logits=logits,
                extra=extra,
            )
            opt.step()
            sched.step()
            if on_step is not None:
                on_step(step + 1, config.epochs * steps_per_epoch)

        record, arrays = evaluate(backbone, head, data, device)
        record = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch} | record
        run.write_epoch(record)
        if config.save_features:
            run.save_features(epoch, **arrays)
        state = {
            "backbone": backbone.state_dict(),
            "head": head.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
        }
        if eagc is not None:
            state["eagc"] = eagc.state_dict()
        run.save_checkpoint("last", state)
        # the model alone, in entangle's checkpoint format, for `entangle analyze`
        save_model_checkpoint(
            run.checkpoint_path("model"), backbone, head, meta={"epoch": epoch, "data": config.data}
        )
        if on_epoch is not None:
            on_epoch(epoch, record)

    summary = run_summary(RunReader(run_dir))
    run.finish(summary)
    return summary


def run_summary(reader: RunReader) -> dict:
    """The DONE summary of a run: last-epoch accuracy and SOC, mean raw (and EAGC-corrected)
    cosine / conflict rate / GDC of the last block over every probed step.

    The numbers come from the report's summary table (one implementation of each statistic).
    """
    from entangle.report.summary import run_summary as summary_table

    table = summary_table(reader.steps, reader.epochs, "last_block")
    out = {
        "acc_all": table["acc_all_last"],
        "acc_old": table["acc_old_last"],
        "acc_new": table["acc_new_last"],
        "soc": table["soc_last_epoch"],
        "cos_mean": table["cos_mean_raw"],
        "gdc_mean": table["gdc_all_raw"],
        "conflict_rate": table["conflict_rate_raw"],
        "steps_probed": table["steps"],
        "nan_steps": table["nan_steps"],
    }
    if any("eagc" in step for step in reader.steps):
        out["cos_mean_eagc"] = table["cos_mean_eagc"]
        out["gdc_mean_eagc"] = table["gdc_all_eagc"]
    return out
