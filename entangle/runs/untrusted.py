"""Look inside untrusted files and names without running anything from them.

A checkpoint or a features ``.npz`` comes from someone else: its pickles may name any Python
callable, and its file name may be ``..``. These helpers read such files as bytes (pickle
opcodes, ``.npy`` headers) to say *what* a refused file would have run, and turn a user's
string into a single safe path component. See docs/reliability.md.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import math
import pickletools
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from entangle.errors import EntangleValueError
from entangle.runs.limits import NPZ_BYTES, check_zip, show_bytes

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"}
_STRING_OPS |= {"BINSTRING", "SHORT_BINSTRING"}
_MAX_PICKLES = 8  # a legacy torch.save file holds 5 pickles before its raw storage bytes


def pickle_globals(stream: BinaryIO) -> list[str]:
    """``module.name`` of every global the pickles at the start of ``stream`` would import.

    Reads the opcodes only (nothing is unpickled): ``GLOBAL`` carries its name, and
    ``STACK_GLOBAL`` takes the last two strings pushed. Covers a raw ``pickle.dump`` file and
    the pickles in front of a legacy (non-zip) ``torch.save`` file; stops at the first byte
    that is not a pickle.
    """
    found = []
    for _ in range(_MAX_PICKLES):
        strings: list[str] = []
        start = stream.tell()
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPS:
                    strings.append(arg if isinstance(arg, str) else repr(arg))
                elif op.name == "GLOBAL":
                    found.append(_py3_name(*str(arg).split(" ", 1)))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(_py3_name(strings[-2], strings[-1]))
        except Exception:  # not (or no longer) a pickle: raw storage bytes, or damage
            break
        if stream.tell() == start:
            break
    return list(dict.fromkeys(found))


def _py3_name(module: str, name: str) -> str:
    """``module.name`` as the unpickler resolves it (protocol <= 2 writes ``__builtin__``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int] | None]:
    """``{name: (shape, dtype, entry_bytes)}`` of the ``.npy`` members of an ``.npz``, from
    their headers and the zip's central directory; nothing else is decompressed.

    ``entry_bytes`` is the member's declared unpacked size. A member whose header cannot be
    read maps to ``None``.
    """
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        header = np.lib.format.read_array_header_1_0(fh)
                    else:
                        header = np.lib.format.read_array_header_2_0(fh)
                except Exception:  # damaged, or a format version this numpy cannot read
                    headers[info.filename[: -len(".npy")]] = None
                    continue
            shape, _fortran, dtype = header
            headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype, info.file_size)
    return headers


def npz_object_arrays(path: str | Path) -> list[str]:
    """Names of the arrays in an ``.npz`` whose dtype holds Python objects (pickles).

    Reads each member's ``.npy`` header only; a member whose header cannot be read is left to
    the loader's own error.
    """
    headers = npz_headers(path).items()
    return [name for name, header in headers if header is not None and header[1].hasobject]


def _check_npz(path: Path, what: str) -> None:
    """Refuse, before any array is allocated, an ``.npz`` that holds pickles, declares more
    than :data:`~entangle.runs.limits.NPZ_BYTES` (or inflates like a zip bomb), or has an
    ``.npy`` header whose shape needs more bytes than its entry holds."""
    check_zip(path, NPZ_BYTES, what)
    headers = npz_headers(path)
    unread = [name for name, header in headers.items() if header is None]
    if unread:  # its shape is unknown, so its size is: numpy would allocate what it says
        raise EntangleValueError(
            f"{what} {path}: array {unread[0]} has a damaged .npy header and is not loaded; "
            "write the file again"
        )
    objects = [name for name, (_, dtype, _) in headers.items() if dtype.hasobject]
    if objects:
        raise EntangleValueError(
            f"{what} {path}: array(s) {', '.join(objects)} hold Python objects (pickles, "
            "which can run code) and are not loaded; save them with numeric or string dtypes"
        )
    for name, (shape, dtype, entry) in headers.items():
        need = math.prod(shape) * dtype.itemsize
        if need > entry:
            raise EntangleValueError(
                f"{what} {path}: array {name} declares shape {shape} of {dtype} "
                f"({show_bytes(need)}) but its entry holds {show_bytes(entry)}; the file is "
                "damaged or crafted, write it again"
            )


_UNSAFE_CHARS = re.compile(r"[^\w.+-]+")
MAX_COMPONENT = 120


def safe_name(text: str, fallback: str = "run") -> str:
    """One path component made from a user's string: never ``.``/``..``, a separator, a
    leading dot or more than :data:`MAX_COMPONENT` characters.

    Characters outside ``[A-Za-z0-9_.+-]`` become ``_`` and leading dots go; a name longer
    than :data:`MAX_COMPONENT` is cut and ends in a short hash of the original, so two long
    strings do not share a directory. An empty result is ``fallback``.
    """
    safe = _UNSAFE_CHARS.sub("_", str(text)).lstrip(".") or fallback
    if len(safe) > MAX_COMPONENT:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[: MAX_COMPONENT - 9]}-{digest}"
    return safe


def load_npz(path: str | Path, what: str = "features file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` in memory, pickles and oversized declarations refused.

    Sizes are checked from the zip's central directory and the ``.npy`` headers before any
    array is read (:mod:`entangle.runs.limits`).

    Raises:
        EntangleValueError: not a readable ``.npz`` (a directory, truncated, damaged), or an
            array holding Python objects (named; re-save it with numeric dtypes), or sizes
            above a limit of :mod:`entangle.runs.limits` (named with its setting).
    """
    path = Path(path)
    try:
        _check_npz(path, what)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except EntangleValueError:
        raise
    except Exception as exc:  # zip / format / OS errors come in many types
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise EntangleValueError(
            f"{what} {path} is not a readable .npz file ({type(exc).__name__}: {detail}); "
            "write it again (the run it belongs to may have been interrupted)"
        ) from None
