"""Size limits on untrusted input, checked from declared sizes before anything is allocated.

A 3 MB features ``.npz`` can declare 3 GiB of deflated zeros, a 4 MB checkpoint a 4 GiB
storage, and a checkpoint's ``meta.arch`` a ViT of 65536 blocks: each is cheap to make and
exhausts memory or time once read. Every such input is measured from what it *declares* (a
zip's central directory, ``.npy`` headers, architecture fields) against a :class:`Limit` here,
the one home of these settings. Each limit has a default that real files stay under and an
environment setting that raises it; a refusal is one line naming both. See
docs/reliability.md, "Size limits".
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from entangle.errors import EntangleValueError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AMOUNT = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Limit:
    """One size limit: a default and the environment setting that overrides it.

    Attributes:
        env: the environment variable (``ENTANGLE_MAX_*``); its value is a non-negative
            integer, for byte limits optionally with a ``K``/``M``/``G``/``T`` suffix (binary).
        default: the value without the setting.
        what: what is counted, for messages (``"bytes a checkpoint declares"``).
        binary: format amounts as bytes (``4.0 GiB``) in messages.
        unit: the unit after a non-byte amount in messages (``"blocks"``).
    """

    env: str
    default: int
    what: str
    binary: bool = False
    unit: str = ""

    def value(self) -> int:
        """The limit in force: the environment setting when set, else the default.

        Raises:
            EntangleValueError: the setting is not a non-negative integer (with a suffix for
                byte limits).
        """
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        match = _AMOUNT.match(raw)
        if match is None or (match.group(2) and not self.binary):
            form = "N (bytes, or with a K/M/G/T suffix)" if self.binary else "N"
            raise EntangleValueError(
                f"the environment setting {self.env}={raw!r} is not a valid limit; set "
                f"{self.env}={form} or unset it (default {self.show(self.default)})"
            )
        return int(match.group(1)) * _UNITS[match.group(2).lower()]

    def show(self, amount: int | float) -> str:
        """``amount`` as a message shows it (``3.0 GiB (3221225472 bytes)`` for bytes)."""
        if self.binary:
            return show_bytes(amount)
        shown = f"{amount:.1f}" if isinstance(amount, float) else str(amount)
        return f"{shown} {self.unit}" if self.unit else shown

    def check(
        self, amount: int | float, subject: str, advice: str = "if the file is genuine, raise"
    ) -> None:
        """Refuse ``amount`` above the limit in force, in one line naming the setting.

        Args:
            amount: what ``subject`` declares, in this limit's unit.
            subject: the input and what it declares (``"model.pt declares"``).
            advice: what to do, ending in a verb the setting completes.

        Raises:
            EntangleValueError: ``amount`` exceeds :meth:`value`.
        """
        limit = self.value()
        if amount > limit:
            raise EntangleValueError(
                f"{subject} {self.show(amount)}, above the limit of {self.show(limit)} "
                f"({self.what}); {advice} the limit with the environment setting {self.env}=N"
            )


def show_bytes(amount: int | float) -> str:
    """``3.0 GiB (3221225472 bytes)``: a byte count as messages show it."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if amount >= size:
            return f"{amount / size:.1f} {unit} ({int(amount)} bytes)"
    return f"{int(amount)} bytes"


# ViT-L/16 weights are ~1.2 GB and ViT-g/14 ~4.5 GB in float32; a training checkpoint with
# optimizer moments is ~3x its weights. 8 GiB keeps every model up to ViT-g loadable.
CHECKPOINT_BYTES = Limit(
    "ENTANGLE_MAX_CHECKPOINT_BYTES", 8 << 30, "bytes a checkpoint may hold", binary=True
)
# 50k x 768 float32 features (CIFAR-100) are 150 MB; ImageNet-1k's 1.28M x 768 are 3.7 GiB.
NPZ_BYTES = Limit("ENTANGLE_MAX_NPZ_BYTES", 4 << 30, "bytes an .npz may hold", binary=True)
# torch.save and entangle's own .npz files store entries uncompressed (ratio 1); float
# features deflate to ~0.9 of their size. A ratio of 1000 is deflated zeros: a bomb.
INFLATE_RATIO = Limit(
    "ENTANGLE_MAX_INFLATE_RATIO", 100, "times its size on disk a zip file may unpack to"
)
# archives smaller than this unpacked are never refused for their ratio: labels and masks
# compress well and are small
INFLATE_FLOOR = 64 << 20
# the largest published ViTs: ViT-g/14 40 blocks 1536-d (1.0e9 parameters), ViT-22B 48 blocks;
# depth read off tensor names is 1 + the largest block index, so one key can ask for 10^8
MODEL_DEPTH = Limit(
    "ENTANGLE_MAX_MODEL_DEPTH", 256, "blocks a rebuilt backbone may have", unit="blocks"
)
# 2**31 float32 parameters fill CHECKPOINT_BYTES' default exactly
MODEL_PARAMS = Limit(
    "ENTANGLE_MAX_MODEL_PARAMS", 1 << 31, "parameters a rebuilt ViT may have", unit="parameters"
)
# DINOv2 runs at 518 px, SAM's ViT at 1024 px: an input size drives every image tensor
VIT_IMAGE_SIZE = Limit(
    "ENTANGLE_MAX_IMAGE_SIZE", 4096, "pixels a rebuilt ViT's input side may have", unit="px"
)
# analyze resizes images to the ViT's input side, so its sequence is grid^2 + 1 + registers:
# DINOv2 at 518 px has 1374 tokens, SAM's 1024 px ViT 4097; patch 1 at 4096 px would be 16.8M
VIT_TOKENS = Limit(
    "ENTANGLE_MAX_VIT_TOKENS", 16384, "tokens a rebuilt ViT's sequence may have", unit="tokens"
)
# ablation grids are counted from their axis lengths before any cell is built (a
# 100x100x100 grid took 2.8 GB and minutes just to expand)
GRID_CELLS = Limit("ENTANGLE_MAX_CELLS", 1000, "cells an ablation grid may have", unit="cells")

LIMITS = (CHECKPOINT_BYTES, NPZ_BYTES, INFLATE_RATIO, MODEL_DEPTH, MODEL_PARAMS)
LIMITS += (VIT_IMAGE_SIZE, VIT_TOKENS, GRID_CELLS)


def zip_declared_bytes(path: str | Path) -> tuple[int, int]:
    """``(unpacked, on_disk)``: the bytes the entries of zip ``path`` declare in its central
    directory, summed, and the file's size. Nothing is decompressed.

    Raises:
        zipfile.BadZipFile, OSError: not a readable zip (left to the caller's own message).
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    return unpacked, path.stat().st_size


def check_zip(path: str | Path, limit: Limit, what: str) -> int:
    """Refuse zip ``path`` when its declared unpacked size exceeds ``limit``, or exceeds
    :data:`INFLATE_RATIO` times its size on disk (and :data:`INFLATE_FLOOR`).

    Args:
        path: a zip file (an ``.npz`` or a ``torch.save`` checkpoint).
        limit: the byte limit for this kind of file.
        what: the file as the message names it (``"checkpoint"``).

    Returns:
        the declared unpacked bytes.

    Raises:
        EntangleValueError: a limit is exceeded (one line naming its setting).
        zipfile.BadZipFile, OSError: not a readable zip.
    """
    unpacked, on_disk = zip_declared_bytes(path)
    limit.check(unpacked, f"{what} {path} declares")
    if unpacked > INFLATE_FLOOR:
        ratio = unpacked / max(on_disk, 1)
        INFLATE_RATIO.check(
            ratio,
            f"{what} {path} ({show_bytes(on_disk)} on disk) declares {show_bytes(unpacked)} "
            "unpacked, a ratio of",
        )
    return unpacked
