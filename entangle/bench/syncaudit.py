"""Count the ops that make the host wait for a CUDA device, on any device (a CPU included).

A CUDA kernel launch returns at once; an op whose *result size or value* the host needs
(``nonzero``, ``.item()``, a boolean-mask index, ``torch.tensor(python_list)`` copied to the
device, ``equal``) blocks the host until the device catches up. Under
:class:`BlockingOps` every aten op dispatched is classified, so a test on the CPU can hold
the training step to its host-sync budget (docs/reliability.md) without a GPU.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops whose output size or value the host must read off the device
_ALWAYS = {
    "nonzero": "nonzero",
    "_local_scalar_dense": "item",  # .item(), float(t), bool(t), int(t)
    "item": "item",
    "is_nonzero": "item",
    "masked_select": "masked_select",
    "equal": "equal",
    "allclose": "allclose",
    "unique": "unique",
    "_unique": "unique",
    "_unique2": "unique",
    "unique_consecutive": "unique",
    "unique_dim": "unique",
    "nonzero_numpy": "nonzero",
    "argwhere": "nonzero",
    "lift_fresh": "tensor from Python data",  # torch.tensor(list) / as_tensor(list)
    "lift_fresh_copy": "tensor from Python data",
}
_BOOL_INDEXED = {"index", "index_put", "index_put_", "_index_put_impl_"}


def _has_mask(indices) -> bool:
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in (indices or ())
    )


def blocking_kind(func, args) -> str | None:
    """Why ``func(*args)`` blocks the host on CUDA, or None when it does not."""
    name = func._schema.name.split("::")[-1]
    if name in _ALWAYS:
        return _ALWAYS[name]
    if name in _BOOL_INDEXED and len(args) > 1 and _has_mask(args[1]):
        return "boolean-mask " + name.strip("_").replace("_impl", "")
    return None


class BlockingOps(TorchDispatchMode):
    """Context manager counting host-blocking ops by kind (:func:`blocking_kind`).

    Example:
        >>> with BlockingOps() as ops:  # doctest: +SKIP
        ...     eagc.coordinate(z, labeled, z_ref)
        >>> dict(ops.counts)
        {}
    """

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = blocking_kind(func, args)
        if kind is not None:
            self.counts[kind] += 1
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))
