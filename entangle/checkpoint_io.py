"""Safe checkpoint loading, strict state-dict loading, and entangle's own checkpoint writer.

Checkpoints are untrusted files: a pickle can run code on load. :func:`safe_load` uses
``torch.load(weights_only=True)`` and allow-lists only numpy scalars and dtypes (which GCD
codebases store as ``best_*_acc``), inside a context manager so nothing leaks into the
process-wide allow-list. Anything else is refused unless the user passes
``--trust-checkpoint`` (``trust=True``).

:func:`save_checkpoint` writes the ``entangle`` layout that :mod:`entangle.checkpoints` detects
and rebuilds; import everything from :mod:`entangle.checkpoints`, which re-exports these names.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.gcd.heads import GCDHead, remap_weight_norm_keys
from entangle.gcd.vit import VisionTransformer
from entangle.runio import write_point
from entangle.untrusted import pickle_globals

ENTANGLE_CHECKPOINT_VERSION = 1
_TRUST_HINT = (
    "If you trust the file's source, pass --trust-checkpoint; loading it then runs whatever "
    "code the file names."
)


class CheckpointError(EntangleValueError):
    """A checkpoint that cannot be loaded safely or does not match the expected layout."""


# ----------------------------------------------------------------------------- safe loading


def _numpy_safe_globals() -> list:
    """numpy's scalar constructor (under both module spellings) and plain dtype classes."""
    scalar = np.float64(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar, per version
    canonical = f"{scalar.__module__}.{scalar.__name__}"
    aliases = {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"} - {canonical}
    allowed: list = [scalar, *((scalar, name) for name in sorted(aliases)), np.dtype]
    # numeric / bool dtypes only: object, void and string dtypes could smuggle objects
    for ch in "?bhilqBHILQefdgFDG":
        allowed.append(type(np.dtype(ch)))
    return allowed


def _allowed_globals() -> set[str]:
    """``module.name`` of what a ``weights_only`` load accepts here: torch's own allow-list
    plus :func:`_numpy_safe_globals`."""
    allowed = set()
    try:
        from torch import _weights_only_unpickler

        allowed |= set(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # a torch without the private helper: torch.* and collections.* pass
        pass
    for item in _numpy_safe_globals():
        obj, name = item if isinstance(item, tuple) else (item, None)
        allowed.add(name or f"{obj.__module__}.{obj.__qualname__}")
    return allowed


def unsafe_globals(path: str | Path) -> list[str]:
    """The globals (``module.name``) a checkpoint would import beyond what
    :func:`safe_load` allows, found without unpickling it.

    A zip checkpoint is asked through ``torch.serialization.get_unsafe_globals_in_checkpoint``;
    a legacy or raw pickle file has its opcodes read (:func:`entangle.untrusted.pickle_globals`).
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # a damaged archive names nothing
            return []
    else:
        with open(path, "rb") as fh:
            names = pickle_globals(fh)
    allowed = _allowed_globals()
    fallback = not any(k.startswith("torch.") for k in allowed)
    return [
        n
        for n in names
        if n not in allowed and not (fallback and n.startswith(("torch.", "collections.")))
    ]


def safe_load(path: str | Path, *, trust: bool = False) -> Any:
    """Load a checkpoint on the CPU without running code from it.

    Whether a refused file needs code is decided from the globals it names
    (:func:`unsafe_globals`), never from torch's wording of the error.

    Args:
        path: a file written by ``torch.save`` (zip or legacy format) or a raw pickle.
        trust: load with ``weights_only=False`` (runs arbitrary code from the file).

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or needs code to load
            (the message names the offending globals and ``--trust-checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not trust:
        names = unsafe_globals(path)
        if names:
            raise CheckpointError(_needs_code(path, names))
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the weights-only unpickler refuses with UnpicklingError: name what it refused if
        # the scan above missed it (an unsupported opcode, say)
        if not trust and (names := unsafe_globals(path)):
            raise CheckpointError(_needs_code(path, names)) from None
        raise CheckpointError(_corrupt(path, exc)) from None
    except Exception as exc:  # torch/zip/pickle raise many types for damaged files
        raise CheckpointError(_corrupt(path, exc, trust)) from None


def _needs_code(path: Path, names: list[str]) -> str:
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    return (
        f"{path} needs code beyond tensors and numpy scalars to load ({shown}); entangle "
        f"refused to run it. {_TRUST_HINT}"
    )


def _corrupt(path: Path, exc: BaseException, trust: bool = False) -> str:
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    extra = ", or needs code that is not importable here" if trust else ""
    return (
        f"{path} is truncated or corrupt{extra} and cannot be read "
        f"({type(exc).__name__}: {detail}); copy it again or pick another checkpoint"
    )


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
    if isinstance(module, VisionTransformer):
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
    shapes. A crash mid-write leaves any previous file intact.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    write_point(f"checkpoint:{path.stem}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
