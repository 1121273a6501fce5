"""The layout registry: one :class:`Layout` per codebase's checkpoint layout (timm style).

A layout module describes one codebase's files with two functions: ``recognise(obj)`` (is
this loaded object in my layout?) and ``split(obj, ctx)`` (its backbone / projector / class
head state dicts, metadata and notes on what was remapped, as :class:`Parts`), and registers
them with :func:`register`. Detection tries the layouts by their ``order``; the first that
recognises the object wins, ``--format NAME`` forces one. Adding a codebase is one new module
under :mod:`entangle.checkpoints.layouts` and its test. See docs/checkpoints.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entangle.checkpoints.safe import CheckpointError


@dataclass
class Parts:
    """A checkpoint split into state dicts the model builders in ``entangle.gcd`` fill.

    Attributes:
        backbone: the backbone's state dict (DINO / DINOv2 ViT key names, or entangle's own).
        head: the class head (``GCDHead`` keys), or None when the file has none.
        meta: plain metadata (epoch, best accuracies, the estimated k, entangle's meta).
        extras: other heads, by name: ``projector`` (DINO projection head), ``mlp_head``.
        notes: what the layout assumed or remapped, shown in the report.
        head_kind: ``"gcd"`` (a ``GCDHead``) or ``"mlp+gcd"`` (EAGC's ``MLP_Head`` then
            ``DINOHead``, keys ``0.*`` / ``1.*``).
        arch: entangle's own architecture record (``meta["arch"]``), trusted as data only.
        prompter: an image-space prompter's state dict (SPTNet), applied before the backbone.
    """

    backbone: dict
    head: dict | None = None
    meta: dict = field(default_factory=dict)
    extras: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    head_kind: str = "gcd"
    arch: Mapping | None = None
    prompter: dict | None = None


@dataclass
class SplitContext:
    """What a layout may need beyond the loaded object.

    Attributes:
        source: the file's name for messages.
        path: the file (None for an object loaded elsewhere).
        head_path: a separate head file given by the user (``--head FILE``).
        load: ``load(path) -> object``: loads another file the same safe way.
    """

    source: str
    path: Path | None = None
    head_path: Path | None = None
    load: Callable[[Path], Any] | None = None


@dataclass(frozen=True)
class Layout:
    """One codebase layout: its name, whom it serves, what loads, and its two functions."""

    name: str
    codebases: str
    loads: str
    recognise: Callable[[Any], bool]
    split: Callable[[Any, SplitContext], Parts]
    order: int = 50  # detection order: specific layouts low, the catch-all plain ViT last


_LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> Layout:
    """Add ``layout`` to the registry (detection tries layouts by ``order``)."""
    if layout.name in _LAYOUTS:
        raise ValueError(f"checkpoint layout {layout.name!r} is registered twice")
    _LAYOUTS[layout.name] = layout
    return layout


def list_layouts() -> list[Layout]:
    """Every registered layout, in detection order (``entangle.checkpoints`` registers them
    on import, by importing :mod:`entangle.checkpoints.layouts`)."""
    return sorted(_LAYOUTS.values(), key=lambda layout: layout.order)


def get_layout(name: str) -> Layout:
    """The layout called ``name``; an error naming the known ones otherwise."""
    known = {layout.name: layout for layout in list_layouts()}
    if name not in known:
        raise CheckpointError(
            f"unknown checkpoint format {name!r}; known: {', '.join(known)} "
            "(entangle analyze --list-formats describes them)"
        )
    return known[name]


def detect_format(obj: Any) -> str:
    """Name the layout of a loaded checkpoint object (the first layout that recognises it).

    Raises:
        CheckpointError: no layout recognises it; one line naming the top-level keys seen and
            the formats tried.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"expected a checkpoint dict, got {type(obj).__name__}; a pickled whole model is "
            "not supported -- save its state_dict()"
        )
    tried = []
    for layout in list_layouts():
        if layout.recognise(obj):
            return layout.name
        tried.append(layout.name)
    keys = sorted(map(str, obj))
    shown = ", ".join(keys[:12]) + (f" ... ({len(keys)} keys)" if len(keys) > 12 else "")
    raise CheckpointError(
        f"unrecognised checkpoint layout (top-level keys: {shown}); tried the formats "
        f"{', '.join(tried)}; force one with --format NAME, or pass --model "
        "package.module:factory"
    )
