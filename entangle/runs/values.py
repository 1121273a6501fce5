"""What entangle writes may hold: JSON values, JSON lines read back, arrays, checkpoint state.

:func:`to_jsonable` turns records into plain JSON values (NaN and +-inf become ``null``; the
records' one JSON conversion) and :func:`json_text` into JSON text (entangle's one JSON
encoder); :func:`read_jsonl` reads a JSON-lines file, tolerating a torn last line.
:func:`as_array` and :func:`check_weights_only` prepare arrays for ``.npz`` files and state
for ``torch.save``. :func:`readable` and :func:`utf8` make file names decoded under a
non-UTF-8 locale writable as UTF-8. The writes themselves are entangle.runs.io's.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from entangle.errors import EntangleTypeError, EntangleValueError

# ---------------------------------------------------------------- text


def readable(text: str) -> str:
    """``text`` without lone surrogates, for display and for UTF-8 files.

    Under a non-UTF-8 locale (``LC_ALL=C PYTHONUTF8=0``) Python decodes a file name's
    non-ASCII bytes to lone surrogates (``"m\\udcc3\\udcb6del.pt"``), which strict UTF-8,
    matplotlib and hashing refuse: the original bytes are decoded as UTF-8 (the name as the
    user typed it, "mödel.pt"), and what is not UTF-8 becomes U+FFFD.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file-name byte decodes to
            raw = text.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "replace")


def utf8(text: str) -> bytes:
    """``text`` as UTF-8 bytes, also when it holds lone surrogates (see :func:`readable`)."""
    return readable(text).encode("utf-8")


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


def json_text(value, where: str = "record", *, indent: int | None = 2, separators=None) -> str:
    """``value`` as JSON text: the one encoder of what entangle writes or prints as JSON.

    :func:`to_jsonable` first, so NaN and +-inf come out as ``null`` and the text is always
    valid JSON (``json.dumps`` alone would write the invalid ``NaN``).

    Args:
        value: what :func:`to_jsonable` accepts.
        where: the key path, for the error message.
        indent, separators: as ``json.dumps``'s (default: indented by 2).
    """
    # allow_nan=False: to_jsonable already mapped NaN/inf to None, so this only guards bugs
    return json.dumps(
        to_jsonable(value, where), allow_nan=False, indent=indent, separators=separators
    )


def dumps_record(record: dict) -> str:
    """One record as a compact line of JSON (:func:`json_text`)."""
    return json_text(record, indent=None, separators=(",", ":"))


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


def as_array(x, name: str) -> np.ndarray:
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


def check_weights_only(value, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would later refuse to load."""
    if isinstance(value, _CKPT_TYPES):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            check_weights_only(k, f"{where} key")
            check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_weights_only(v, f"{where}[{i}]")
        return
    raise EntangleTypeError(
        f"checkpoint {where}: a {type(value).__name__} would not load with weights_only=True; "
        "store tensors and plain values only (use .state_dict(), torch.from_numpy, .item())"
    )
