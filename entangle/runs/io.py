"""File primitives for run directories: JSON values, JSON lines, crash-safe writes.

:func:`to_jsonable` turns records into plain JSON values (NaN and +-inf become ``null``);
:func:`read_jsonl` reads a JSON-lines file, tolerating a torn last line. ``_as_array`` and
``_check_weights_only`` prepare arrays for ``.npz`` files and state for ``torch.save``. The
``_atomic_*`` helpers write a file through a temporary sibling and ``os.replace`` and fsync
both the file and its directory, so a reader sees the old file or the new one, never a mix.
:class:`entangle.runs.directory.RunWriter` and :class:`entangle.runs.directory.RunReader` are
built on these.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError

_TMP_SUFFIX = ".tmp"

# Fault injection (docs/reliability.md): when set, called with the name of each write point
# of a run ("steps", "epochs", "features", "checkpoint:last", "checkpoint:model",
# "checkpoint:reference", "DONE") just before it writes, so a test can kill the writer there.
fault_hook = None


def write_point(name: str) -> None:
    """Announce a write point to :data:`fault_hook` (nothing happens when it is unset)."""
    if fault_hook is not None:
        fault_hook(name)


# ---------------------------------------------------------------- JSON values


def to_jsonable(value, where: str = "record"):
    """Convert a record to plain JSON values: tensors and arrays to (nested) lists, NaN/inf to None.

    Args:
        value: dict / list / tuple / scalar; numpy scalars and arrays, torch tensors of any
            shape (moved to the CPU), ``pathlib.Path`` and dataclasses are accepted.
        where: the key path, for the error message.

    Returns:
        the same structure built from dict, list, str, int, float, bool and None only.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist(), where)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), where)
    raise EntangleTypeError(
        f"{where}: cannot store a {type(value).__name__} in a JSON record; use numbers, "
        "strings, bools, None, lists, dicts, numpy arrays or tensors"
    )


def _dumps(record: dict) -> str:
    # allow_nan=False: to_jsonable already mapped NaN/inf to None, so this only guards bugs
    return json.dumps(to_jsonable(record), allow_nan=False, separators=(",", ":"))


def read_jsonl(path) -> tuple[list[dict], list[str]]:
    """Read a JSON-lines file written by :class:`RunWriter`.

    A last line that does not parse (the process was killed while writing it) is dropped and
    reported; a bad line anywhere else raises, naming the file and the line number.

    Args:
        path: the ``.jsonl`` file; a missing file reads as no records.

    Returns:
        ``(records, warnings)``: a list of dicts and a list of human-readable strings.
    """
    path = Path(path)
    if not path.exists():
        return [], []
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records, warnings = [], []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if i == last:
                warnings.append(
                    f"{path.name}: last line is torn (process killed while writing?); ignored"
                )
                break
            raise EntangleValueError(
                f"{path}: line {i + 1} is not valid JSON ({exc}); the file is corrupt beyond a "
                "torn last line, so it was not written by entangle alone"
            ) from exc
        if not isinstance(record, dict):
            raise EntangleValueError(
                f"{path}: line {i + 1} holds a {type(record).__name__}, expected a JSON object"
            )
        records.append(record)
    return records, warnings


# ---------------------------------------------------------------- arrays and tensors


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise EntangleTypeError(
            f"{name}: expected a tensor or array, got {type(x).__name__}"
        ) from exc


_CKPT_TYPES = (torch.Tensor, int, float, bool, str, type(None), torch.dtype, torch.Size)


def _check_weights_only(value, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would later refuse to load."""
    if isinstance(value, _CKPT_TYPES):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_weights_only(k, f"{where} key")
            _check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_weights_only(v, f"{where}[{i}]")
        return
    raise EntangleTypeError(
        f"checkpoint {where}: a {type(value).__name__} would not load with weights_only=True; "
        "store tensors and plain values only (use .state_dict(), torch.from_numpy, .item())"
    )


# ---------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    # makes the rename itself durable; not possible on every platform, and not essential
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(path: Path, exc: BaseException) -> EntangleRuntimeError:
    """One line for a failed write: the file, the cause, and that rerunning resumes."""
    detail = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120] or type(exc).__name__
    return EntangleRuntimeError(
        f"cannot write {path} ({detail}): the disk may be full or not writable; free space "
        "and rerun the same command to resume (the previous file, if any, is intact)"
    )


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary sibling and ``os.replace``: readers see old or new."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # disk full: torch.save says "unexpected pos"
        raise write_error(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _atomic_json(path: Path, obj: dict) -> None:
    text = json.dumps(to_jsonable(obj), allow_nan=False, indent=2) + "\n"
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _drop_torn_tail(path: Path) -> int:
    """Cut an unterminated last line off ``path``; return the number of bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep
