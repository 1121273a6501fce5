"""Safe checkpoint loading: tensors and numpy scalars only, never code from the file.

Checkpoints are untrusted files: a pickle can run code on load. :func:`safe_load` uses
``torch.load(weights_only=True)`` and allow-lists only numpy scalars and dtypes (which GCD
codebases store as ``best_*_acc``), inside a context manager so nothing leaks into the
process-wide allow-list. Anything else is refused unless the user passes
``--trust-checkpoint`` (``trust=True``).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from entangle.errors import EntangleValueError
from entangle.runs.limits import CHECKPOINT_BYTES, check_zip
from entangle.runs.untrusted import pickle_globals

# ablate has no such flag on purpose (a shared grid spec must not be able to run code), so
# the hint names the commands that take it
_TRUST_HINT = (
    "If you trust the file's source, pass --trust-checkpoint (entangle train and analyze take "
    "it, ablate does not); loading it then runs whatever code the file names."
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
    a legacy or raw pickle file has its opcodes read
    (:func:`entangle.runs.untrusted.pickle_globals`).
    """
    path = Path(path)
    if _is_zip(path):
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
        CheckpointError: the file is missing, truncated or corrupt, needs code to load
            (the message names the offending globals and ``--trust-checkpoint``), or declares
            more than a limit of :mod:`entangle.runs.limits` allows (:func:`check_size`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    check_size(path)
    if not trust:
        names = unsafe_globals(path)
        if names:
            raise CheckpointError(_needs_code(path, names))
    try:
        if trust:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the weights-only unpickler refuses with UnpicklingError: name what it refused if
        # the scan above missed it (an unsupported opcode, say)
        if not trust and (names := unsafe_globals(path)):
            raise CheckpointError(_needs_code(path, names)) from None
        raise CheckpointError(_corrupt(path, exc)) from None
    except Exception as exc:  # torch/zip/pickle raise many types for damaged files
        raise CheckpointError(_corrupt(path, exc, trust)) from None
    _check_tensor_bytes(obj, path)
    return obj


def tensor_bytes(obj: Any) -> int:
    """Bytes the tensors in a loaded checkpoint describe (``numel * element_size``, summed over
    nested dicts, lists and tuples; each object once, so a self-referencing pickle ends)."""
    total, seen, stack = 0, set(), [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total


def _check_tensor_bytes(obj: Any, path: Path) -> None:
    """Refuse tensors that describe more than :data:`~entangle.runs.limits.CHECKPOINT_BYTES`:
    a stride-0 view (``torch.zeros(1).expand(65536, 65536)``) stores 4 bytes in a 1.6 KB file
    but is 16 GiB to anything that copies it."""
    try:
        CHECKPOINT_BYTES.check(tensor_bytes(obj), f"checkpoint {path}'s tensors describe")
    except EntangleValueError as exc:
        raise CheckpointError(str(exc)) from None


def _is_zip(path: Path) -> bool:
    """``zipfile.is_zipfile``, but one CheckpointError for an end record it cannot parse
    (``BadZipFile: zipfiles that span multiple disks``, which it does not catch itself)."""
    try:
        return zipfile.is_zipfile(path)
    except Exception as exc:
        raise CheckpointError(_corrupt(path, exc)) from None


def check_size(path: str | Path) -> None:
    """Refuse a checkpoint whose storages would exceed
    :data:`~entangle.runs.limits.CHECKPOINT_BYTES` once read, before torch reads any of it.

    A zip checkpoint is measured by the unpacked sizes its central directory declares (and
    their ratio to the file's size: torch stores entries uncompressed, so a deflated 4 GiB
    storage in a 4 MB file is a bomb); a legacy or raw pickle file holds its storages as they
    are, so its size on disk is the measure.

    Raises:
        CheckpointError: a limit is exceeded (one line naming its environment setting).
    """
    path = Path(path)
    try:
        if _is_zip(path):
            try:
                check_zip(path, CHECKPOINT_BYTES, "checkpoint")
            except EntangleValueError:
                raise
            except Exception as exc:  # unmeasured sizes never reach torch's own zip reader
                raise CheckpointError(_corrupt(path, exc)) from None
        else:
            CHECKPOINT_BYTES.check(path.stat().st_size, f"checkpoint {path} holds")
    except CheckpointError:
        raise
    except EntangleValueError as exc:
        raise CheckpointError(str(exc)) from None


def refuse_code(path: str | Path) -> None:
    """Fail now, in one line, when ``path`` is missing or its pickle names code.

    What :func:`safe_load` would refuse, checked without loading (a command checks its input
    files this way before minutes of other work).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    names = unsafe_globals(path)
    if names:
        raise CheckpointError(_needs_code(path, names))


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
