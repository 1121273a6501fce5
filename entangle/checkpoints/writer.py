"""entangle's own checkpoint layout: state dicts and plain metadata, written atomically.

:func:`save_checkpoint` writes the ``entangle`` layout that
:mod:`entangle.checkpoints.layouts.entangle` recognises and
:func:`entangle.checkpoints.load_gcd_checkpoint` rebuilds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from entangle.errors import EntangleTypeError
from entangle.models.heads import GCDHead
from entangle.models.vit import VisionTransformer
from entangle.runs.io import atomic_write, make_dir

ENTANGLE_CHECKPOINT_VERSION = 1

# ------------------------------------------------------------------------------- writing


def _check_meta(value: Any, where: str = "meta") -> Any:
    """Plain data a ``weights_only`` load accepts; numpy scalars become Python numbers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return [_check_meta(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise EntangleTypeError(f"{where}: keys must be strings, got {type(k).__name__}")
            out[k] = _check_meta(v, f"{where}.{k}")
        return out
    raise EntangleTypeError(
        f"{where}: {type(value).__name__} cannot be stored in a weights-only checkpoint; use "
        "numbers, strings, lists, dicts or tensors"
    )


def _arch_of(module: nn.Module | None) -> dict | None:
    if module is None:
        return None
    if type(module) is VisionTransformer:  # subclasses (PromptCAL's VPT) from the shapes
        return {"kind": "vit", "config": module.config.to_dict()}
    if isinstance(module, GCDHead):
        return {"kind": "gcd", "config": dict(module.config)}
    return None  # rebuilt from the tensors' shapes on load (the digits backbone, say)


def save_checkpoint(
    path: str | Path, backbone: nn.Module, head: nn.Module | None, meta: Mapping | None = None
) -> Path:
    """Write an entangle checkpoint: state dicts and plain metadata only, atomically.

    The file loads with ``weights_only=True``. The architecture goes into ``meta["arch"]``
    (ViT and head configs: data, never code to call) so :func:`load_gcd_checkpoint` can
    rebuild the models; other modules are rebuilt from their tensors'
    shapes. A crash mid-write leaves any previous file intact; a symlink at ``path`` or its
    folder is refused (:func:`entangle.runs.io.atomic_write`). The file is 0o644, like every
    file entangle writes.

    Returns:
        the path written.
    """
    path = Path(path)
    meta = dict(_check_meta(dict(meta or {})))
    meta.setdefault("arch", {"backbone": _arch_of(backbone), "head": _arch_of(head)})
    payload = {
        "entangle_checkpoint": ENTANGLE_CHECKPOINT_VERSION,
        "backbone": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "head": None
        if head is None
        else {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "meta": meta,
    }
    make_dir(path.parent)
    return atomic_write(path, lambda fh: torch.save(payload, fh))
