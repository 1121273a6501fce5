"""The one device resolver of every command's ``--device`` (train, analyze, bench)."""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; any other name must exist here.

    Checked up front so a run fails in one line before it writes anything: ``cuda:7`` on a
    machine with one GPU would otherwise fail at the first ``.to(device)``, mid-run.

    Raises:
        EntangleValueError: a device string torch does not know, a CUDA index this machine
            does not have, or a backend torch lacks here.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise EntangleValueError(
            f"unknown device {name!r} ({exc}); use --device auto, cpu or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise EntangleValueError(
                f"--device {name} asked for, but this machine has {count} CUDA device(s); "
                "use --device auto or cpu"
            )
    elif device.type != "cpu" and not getattr(torch, device.type, None):
        raise EntangleValueError(f"device {name!r} is not available here; use --device cpu")
    return device
