"""A plain SimGCD-style training script, without entangle: the baseline of simgcd_style.py.

``diff examples/simgcd_plain.py examples/simgcd_style.py`` shows every line entangle adds or
changes (docs/simgcd-guide.md explains each). Run: ``python examples/simgcd_plain.py``.
"""

from __future__ import annotations

import torch
from simgcd_common import (
    build_backbone,
    freeze,
    loaders,
    params_groups,
    parse_args,
    simgcd_losses,
    test,
)

from entangle.gcd.losses import LossConfig, teacher_temperature_at
from entangle.models.heads import GCDHead


def train(args) -> list:
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    data, plain, train_loader, eval_loader = loaders(args)

    backbone = build_backbone(args.backbone, args.size).to(device)
    freeze(backbone, args.grad_from_block)
    head = GCDHead(64, data.classes, proj_dim=32, hidden_dim=64, nlayers=3).to(device)
    student = torch.nn.Sequential(backbone, head)

    optimizer = torch.optim.SGD(
        params_groups(backbone, head), lr=args.lr, momentum=0.9, weight_decay=1e-4
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=args.epochs, eta_min=args.lr * 1e-3
    )
    scaler = torch.amp.GradScaler(device.type) if args.fp16 and device.type == "cuda" else None
    loss_config = LossConfig(warmup_teacher_epochs=args.epochs)
    w = loss_config.sup_weight
    accuracies = []

    for epoch in range(args.epochs):
        student.train()
        for views, class_labels, _uq_idxs, mask_lab in train_loader:
            mask_lab = mask_lab[:, 0].to(device).bool()
            class_labels = class_labels.to(device)
            images = torch.cat(views, dim=0).to(device)
            with torch.autocast(device.type, enabled=scaler is not None):
                student_proj, student_out = student(images)
                t = teacher_temperature_at(epoch, loss_config)
                cls, cluster, sup_con, contrastive = simgcd_losses(
                    student_proj, student_out, class_labels, mask_lab, epoch, t
                )
                loss = w * (cls + sup_con) + (1 - w) * (cluster + contrastive)
            optimizer.zero_grad()
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        accuracies.append(test(student, eval_loader, data.old))
        scheduler.step()
    return accuracies


if __name__ == "__main__":
    print(train(parse_args(description=__doc__.splitlines()[0])))
