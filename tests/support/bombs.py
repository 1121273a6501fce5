"""Decompression bombs that are tiny on disk and cheap to build, for the size-limit tests.

:func:`declare_size` rewrites a zip so that one entry's central-directory record declares
``size`` unpacked bytes while the entry keeps its real (small) data: what a reader that trusts
the central directory would allocate, without anyone deflating gigabytes of zeros.
:func:`deflated_zeros_npz` is a real bomb (zeros that really inflate), kept just above the
ratio check's floor. See docs/reliability.md, "Size limits".
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def declare_size(path: Path, member_suffix: str, size: int) -> Path:
    """Rewrite zip ``path`` in place: entries whose name ends in ``member_suffix`` declare
    ``size`` bytes in the central directory (zip64 records when needed); data unchanged."""
    path = Path(path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in entries:
            dst.writestr(info, data)
        # the central directory is written from these records on close
        for info in dst.infolist():
            if info.filename.endswith(member_suffix):
                info.file_size = size
    return path


def npy_header_claiming(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A ``.npy`` header for ``shape`` with no array data after it."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def deflated_zeros_npz(path: Path, nbytes: int) -> Path:
    """A features ``.npz`` whose ``features.npy`` holds ``nbytes`` of deflated zeros
    (``[nbytes / 256, 64]`` float32), plus ``labels`` and ``labeled``; streamed, so building
    it needs no memory of that size."""
    rows = nbytes // (64 * 4)
    info = zipfile.ZipInfo("features.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(npy_header_claiming((rows, 64)))
            left = rows * 64 * 4
            while left > 0:
                fh.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        for name, array in (("labels", np.zeros(rows, np.int64)), ("labeled", np.ones(rows, bool))):
            buf = io.BytesIO()
            np.save(buf, array)
            zf.writestr(f"{name}.npy", buf.getvalue())
    return path


def mutated(*originals: bytes):
    """A hypothesis strategy: one of ``originals`` with up to 8 bytes overwritten anywhere
    (headers, sizes, central directory) and its tail possibly cut off."""
    from hypothesis import strategies as st

    edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8)

    def apply(args) -> bytes:
        original, changes, cut = args
        data = bytearray(original)
        for where, value in changes:
            data[int(where * len(data))] = value
        return bytes(data[: max(1, int(cut * len(data)))])

    return st.tuples(st.sampled_from(originals), edits, st.floats(0.05, 1)).map(apply)


def fuzz_settings():
    """Hypothesis settings of the mutated-file tests: 60 examples, no deadline, ``tmp_path``
    shared by the examples (each writes the same file anew)."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
