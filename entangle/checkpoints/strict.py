"""Strict state-dict loading with one readable error listing every mismatch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from entangle.checkpoints.safe import CheckpointError
from entangle.models.heads import remap_weight_norm_keys

# ------------------------------------------------------------------------- strict loading


def load_strict(
    module: nn.Module,
    state: Mapping[str, Any],
    *,
    what: str,
    source: str,
    fmt: str | None = None,
    assign: bool = False,
) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable error.

    Both weight-norm spellings are accepted. Raises :class:`CheckpointError` listing missing
    keys, unexpected keys and shape mismatches, naming the detected format. ``assign=True``
    adopts the file's tensors (cast to the module's dtypes) instead of copying into the
    module's: use it for modules built on the ``meta`` device.
    """
    state = remap_weight_norm_keys(state)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {_shape(state[k])} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and _shape(state[k]) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        layout = f" ({fmt} layout)" if fmt else ""
        parts = [f"{source}: the {what}{layout} does not match the model built for it"]
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = ", ".join(items[:12]) + (" ..." if len(items) > 12 else "")
                parts.append(f"  {label} ({len(items)}): {shown}")
        parts.append(
            "  The file comes from a different architecture or layout; pass "
            "--model package.module:factory to build the right model."
        )
        raise CheckpointError("\n".join(parts))
    if assign:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=assign)


def _shape(value: Any) -> tuple | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
