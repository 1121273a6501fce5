"""Small tensor helpers shared by the metric modules (not public)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from entangle.errors import EntangleTypeError, EntangleValueError

GradLike = torch.Tensor | Sequence[torch.Tensor | None]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to accumulate in: half precision is promoted to float32, float64 kept."""
    if not dtype.is_floating_point:
        return torch.float32
    return torch.promote_types(dtype, torch.float32)


def as_tensor(x, name: str) -> torch.Tensor:
    """Accept a tensor or array-like; numpy arrays become CPU tensors without a copy."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise EntangleTypeError(
            f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}"
        ) from exc


def as_matrix(x, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D floating tensor ``[n, D]`` or raise a ValueError naming ``name``."""
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise EntangleValueError(
            f"{name}: expected a 2-D tensor [n, D] (rows are samples), got shape {tuple(t.shape)}"
        )
    return t.to(compute_dtype(t.dtype))


def as_mask(x, n: int, name: str) -> torch.Tensor:
    """Return a boolean mask of length ``n`` or raise a ValueError naming both lengths."""
    t = as_tensor(x, name)
    if t.ndim != 1 or t.shape[0] != n:
        raise EntangleValueError(
            f"{name}: expected a 1-D mask with {n} entries (one per row), got {tuple(t.shape)}"
        )
    return t.bool()


def pair_flat(g_sup: GradLike, g_unsup: GradLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten two gradients (tensors or per-parameter lists) into aligned 1-D vectors.

    Per-parameter lists may hold ``None`` (a parameter one loss does not reach): it counts as
    zeros when the other list has a tensor there, and is skipped when both are ``None``.
    """
    if isinstance(g_sup, torch.Tensor) and isinstance(g_unsup, torch.Tensor):
        if g_sup.numel() != g_unsup.numel():
            raise EntangleValueError(
                f"gradients differ in size: g_sup has {g_sup.numel()} entries, g_unsup "
                f"{g_unsup.numel()}; pass gradients of the same parameters"
            )
        return g_sup.reshape(-1), g_unsup.reshape(-1)
    if isinstance(g_sup, torch.Tensor) or isinstance(g_unsup, torch.Tensor):
        raise EntangleTypeError(
            "pass both gradients as tensors or both as per-parameter sequences, not one of each"
        )
    g_sup, g_unsup = list(g_sup), list(g_unsup)
    if len(g_sup) != len(g_unsup):
        raise EntangleValueError(
            f"per-parameter gradient lists differ in length ({len(g_sup)} vs {len(g_unsup)}); "
            "pass one entry per parameter in the same order"
        )
    parts_s, parts_u = [], []
    for i, (s, u) in enumerate(zip(g_sup, g_unsup, strict=True)):
        if s is None and u is None:
            continue
        if s is not None and u is not None and s.shape != u.shape:
            raise EntangleValueError(
                f"parameter {i}: g_sup has shape {tuple(s.shape)}, g_unsup {tuple(u.shape)}"
            )
        ref = s if s is not None else u
        parts_s.append((s if s is not None else torch.zeros_like(ref)).reshape(-1))
        parts_u.append((u if u is not None else torch.zeros_like(ref)).reshape(-1))
    if not parts_s:
        empty = torch.zeros(0)
        return empty, empty
    return torch.cat(parts_s), torch.cat(parts_u)
