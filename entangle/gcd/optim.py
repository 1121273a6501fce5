"""SimGCD's optimiser and schedule: SGD without weight decay on biases and 1-D parameters,
a cosine schedule stepped once per epoch down to ``lr * 1e-3`` (see docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

# SimGCD's CosineAnnealingLR(eta_min=args.lr * 1e-3), in train.py and the EAGC authors' code
ETA_MIN_FACTOR = 1e-3


def param_groups(modules: Iterable[torch.nn.Module]) -> list[dict]:
    """Trainable parameters of ``modules`` in SimGCD's two groups (its ``get_params_groups``).

    Biases (names ending in ``.bias``) and every 1-D parameter (norm scales) get
    ``weight_decay=0``; the rest the optimiser's weight decay (also the weight-norm ``g`` of
    a classifier, shape ``[K, 1]``, as in SimGCD; it is frozen by default
    anyway). Frozen parameters are left out.

    Returns:
        ``[{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]`` (an empty
        group left out).
    """
    decayed, not_decayed = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith(".bias") or p.ndim <= 1:
                not_decayed.append(p)
            else:
                decayed.append(p)
    groups = [{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def simgcd_optimizer(
    modules: Iterable[torch.nn.Module],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    epochs: int,
    head: torch.nn.Module | None = None,
    lr_head: float | None = None,
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """SGD over :func:`param_groups` and its cosine schedule over ``epochs``.

    Call ``scheduler.step()`` once per epoch (after the epoch, as SimGCD does): a group with
    base lr ``b`` trains epoch ``e`` at ``eta_min + (b - eta_min) (1 + cos(pi e / epochs)) / 2``.

    Args:
        modules: what trains at ``lr`` (all of the model when ``lr_head`` is None).
        head, lr_head: with ``lr_head`` set, ``head``'s parameters train at ``lr_head`` in two
            more groups, after ``modules``' (the EAGC authors' methods/SimGCD.py: backbone
            groups at ``--lr_backbone``, projector groups at ``--lr``).

    ``eta_min`` is ``1e-3`` times the head's lr (``lr`` when ``lr_head`` is None) and is
    shared by every group, as the authors' ``CosineAnnealingLR(eta_min=args.lr * 1e-3)``
    with ``args.lr`` the head's: the backbone's lr then ends at ``lr_head * 1e-3``, not at
    ``lr * 1e-3`` (docs/benchmarks.md, "Presets").
    """
    modules = list(modules)
    if lr_head is None:  # one lr: SimGCD's two groups over everything
        groups = param_groups(modules + ([head] if head is not None else []))
    elif head is None:
        raise ValueError("lr_head needs the head whose parameters it applies to")
    else:
        groups = param_groups(modules) + [g | {"lr": lr_head} for g in param_groups([head])]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    floor = lr if lr_head is None else lr_head
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, epochs), eta_min=floor * ETA_MIN_FACTOR
    )
    return opt, sched
