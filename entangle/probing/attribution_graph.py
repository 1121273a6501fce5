"""What attribution needs of the autograd graph (see docs/attribution.md).

Per-row shares of <g_S, g_U> exist only when rows do not interact inside the probed group
(:func:`check_rows_independent`), and the row Jacobian needs a double backward through it
(:func:`math_attention` picks the attention kernel that has one; :func:`explained_autograd`
says so in one line when an operation has none).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from entangle.errors import EntangleRuntimeError, EntangleValueError

# autograd nodes whose output rows mix the batch when they run in training mode
_ROW_COUPLING_NODES = ("BatchNorm",)


def check_rows_independent(features: torch.Tensor, params: list[torch.Tensor]) -> None:
    """Refuse graphs where rows interact between ``params`` and ``features``.

    Walks the autograd graph from ``features`` and looks, on the paths that reach one of
    ``params``, for batch-statistics nodes (BatchNorm in train mode). Row coupling before the
    group (a frozen prefix) is harmless: it does not depend on theta.

    Args:
        features: ``[n, D]`` tensor the losses were computed from.
        params: the parameters of the attributed group.

    Raises:
        EntangleValueError: when such a node sits between the group and ``features``, or
            when a parameter of the group does not reach ``features`` at all.
    """
    if features.grad_fn is None:
        raise EntangleValueError(
            "attribution: features has no autograd graph; pass the tensor the losses used"
        )
    targets = {id(p) for p in params}
    reaches: dict[int, bool] = {}
    found_params: set[int] = set()
    coupling: list[str] = []
    # iterative post-order walk: ViT graphs are thousands of nodes deep
    stack: list[tuple[object, bool]] = [(features.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in reaches and not expanded:
            continue
        children = [n for n, _ in getattr(node, "next_functions", ()) if n is not None]
        if not expanded:
            var = getattr(node, "variable", None)
            if var is not None:
                hit = id(var) in targets
                if hit:
                    found_params.add(id(var))
                reaches[key] = hit
                continue
            reaches[key] = False  # placeholder so cycles (none in autograd) cannot loop
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in reaches)
            continue
        hit = any(reaches.get(id(c), False) for c in children)
        reaches[key] = hit
        name = type(node).__name__
        if hit and any(s in name for s in _ROW_COUPLING_NODES):
            if getattr(node, "_saved_training", True):
                coupling.append(name)
    if coupling:
        raise EntangleValueError(
            f"attribution: rows interact inside the probed group ({coupling[0]} in train "
            "mode), so <g_S, g_U> does not split into per-row shares; put those BatchNorm "
            "layers in eval mode, or attribute a group above them"
        )
    missing = [p for p in params if id(p) not in found_params and p.requires_grad]
    if missing:
        raise EntangleValueError(
            f"attribution: {len(missing)} parameter(s) of the probed group do not reach "
            "features (e.g. a classifier head); attribute a group of the backbone only"
        )


_NO_DOUBLE_BACKWARD = (
    "attribution needs a double backward through the probed part, and an operation there "
    "has none ({op}); fused attention kernels (F.scaled_dot_product_attention's flash / "
    "memory-efficient ones) are the usual cause: run the forward of attributed steps inside "
    "`with probe.attribution_forward():`, which selects the math attention kernel"
)


@contextmanager
def math_attention():
    """Math kernel for the attention calls that build a graph (it has a double backward).

    Only ``F.scaled_dot_product_attention`` calls whose query, key or value requires grad
    switch: blocks of a frozen prefix (no graph) keep the fused kernels.
    """
    with _GraphAttentionMath():
        yield


class _GraphAttentionMath(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention and torch.is_grad_enabled():
            qkv = list(args[:3]) + [kwargs.get(k) for k in ("query", "key", "value")]
            if any(isinstance(t, torch.Tensor) and t.requires_grad for t in qkv):
                from torch.nn.attention import SDPBackend, sdpa_kernel

                with sdpa_kernel(SDPBackend.MATH):
                    return func(*args, **kwargs)
        return func(*args, **kwargs)


def explained_autograd(fn):
    """``fn()``, with a missing double backward explained in one line (the usual cause:
    fused attention kernels) as :class:`EntangleRuntimeError`."""
    try:
        return fn()
    except RuntimeError as err:
        if "derivative for" in str(err) and "not implemented" in str(err):
            op = str(err).split("derivative for", 1)[1].split("is not", 1)[0].strip()
            raise EntangleRuntimeError(_NO_DOUBLE_BACKWARD.format(op=op)) from err
        raise
