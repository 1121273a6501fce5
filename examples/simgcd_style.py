"""A SimGCD-style training script with entangle in it: Probe, reference model, EAGC, evaluations.

The loop has the shape of SimGCD's ``train()``: batches ``(views, labels, uq_idxs,
mask_lab)``, both views stacked, a DINO-style head with a weight-normalised last layer giving
``(projection, logits)``, the SimGCD objective, optional fp16 with a GradScaler, a cosine
schedule stepped per epoch. ``diff examples/simgcd_plain.py examples/simgcd_style.py`` is
exactly what entangle changes; docs/simgcd-guide.md explains each line. Run it (tiny
generated images, seconds on a CPU):

    python examples/simgcd_style.py --out runs/simgcd-style [--tensorboard tb/]
    entangle report runs/simgcd-style

The backbone is timm's ``VisionTransformer`` when timm is installed, else entangle's built-in
ViT (same parameter names, torch only). On real data load DINO's ViT-B/16 instead
(``torch.hub.load("facebookresearch/dino:main", "dino_vitb16")``): entangle splits all three.
"""

from __future__ import annotations

from pathlib import Path

import torch
from simgcd_common import build_backbone, freeze, loaders, params_groups, parse_args, simgcd_losses

from entangle import EAGC, Probe, ProbeSet, RunWriter, SharedPrefix, last_block, train_reference
from entangle.gcd.losses import LossConfig, teacher_temperature_at
from entangle.models.heads import GCDHead


def train(args) -> Path:
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    data, plain, train_loader, eval_loader = loaders(args)
    lab_x, lab_y = plain.images[plain.labeled], plain.labels[plain.labeled]
    labeled_loader = list(zip(lab_x.split(32), lab_y.split(32), strict=True))

    backbone = build_backbone(args.backbone, args.size).to(device)
    freeze(backbone, args.grad_from_block)
    head = GCDHead(64, data.classes, proj_dim=32, hidden_dim=64, nlayers=3).to(device)
    student = torch.nn.Sequential(backbone, head)
    # the reference: the trainable blocks + an old-class head, trained on labeled data only;
    # the live model starts from it (the EAGC authors' protocol), so z = z_ref at step 0
    ref_head = GCDHead(64, data.old, proj_dim=32, hidden_dim=64, nlayers=3).to(device)
    reference, _ = train_reference(backbone, ref_head, labeled_loader, epochs=args.ref_epochs)
    backbone.load_state_dict(reference.state_dict())
    eagc = EAGC.fit(reference, labeled_loader, aperture=2.0)
    shared = SharedPrefix(backbone, reference)  # frozen blocks run once for both models
    rows = torch.arange(0, len(plain), 2)
    novel = plain.labels[rows] >= data.old
    probeset = ProbeSet(backbone, plain.images[rows], plain.labeled[rows], novel, every=4, k=8)
    run = RunWriter(args.out, config=vars(args) | {"aperture": 2.0}, seed=args.seed)
    probe = Probe(
        {"last_block": last_block(backbone)},
        every=args.probe_every,
        run=run,
        eagc=eagc,
        probeset=probeset,
        attribution=True,  # which unlabeled rows (classes) make the conflict
        tensorboard=args.tensorboard,
    )

    optimizer = torch.optim.SGD(
        params_groups(backbone, head), lr=args.lr, momentum=0.9, weight_decay=1e-4
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=args.epochs, eta_min=args.lr * 1e-3
    )
    scaler = torch.amp.GradScaler(device.type) if args.fp16 and device.type == "cuda" else None
    loss_config = LossConfig(warmup_teacher_epochs=args.epochs)
    w = loss_config.sup_weight

    for epoch in range(args.epochs):
        probe.epoch = epoch
        student.train()
        for views, class_labels, uq_idxs, mask_lab in train_loader:
            mask_lab = mask_lab[:, 0].to(device).bool()
            class_labels = class_labels.to(device)
            images = torch.cat(views, dim=0).to(device)
            mask_lab2 = mask_lab.repeat(2)  # one entry per row of the stacked views
            with torch.autocast(device.type, enabled=scaler is not None):
                with probe.attribution_forward():  # attention with a second derivative
                    z, z_ref = shared(images)
                z = eagc.coordinate(z, mask_lab2, z_ref, scaler=scaler)
                student_proj, student_out = head(z)
                t = teacher_temperature_at(epoch, loss_config)
                cls, cluster, sup_con, contrastive = simgcd_losses(
                    student_proj, student_out, class_labels, mask_lab, epoch, t
                )
                sup = w * (cls + sup_con)
                unsup = (1 - w) * (cluster + contrastive)
            optimizer.zero_grad()
            # (sup + unsup), scaled when a scaler is given, backward; measured on probed steps
            oracle = {"targets": class_labels.repeat(2), "index": uq_idxs.repeat(2)}
            probe.backward(sup, unsup, features=z, labeled=mask_lab2, scaler=scaler, **oracle)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
        # accuracy, SOC, energies and saved features: every section of the report
        probe.record_epoch(backbone, head, eval_loader, old_classes=data.old)
        scheduler.step()
    probe.close()
    run.finish()
    return Path(args.out)


if __name__ == "__main__":
    out = train(parse_args(description=__doc__.splitlines()[0]))
    print(f"run written to {out}; `entangle report {out}` draws the report")
