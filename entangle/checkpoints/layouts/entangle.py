"""entangle's own layout: ``{"entangle_checkpoint": 1, "backbone", "head", "meta"}``."""

from __future__ import annotations

from entangle.checkpoints.keys import unwrap
from entangle.checkpoints.registry import Layout, Parts, register
from entangle.checkpoints.safe import CheckpointError
from entangle.checkpoints.writer import ENTANGLE_CHECKPOINT_VERSION


def recognise(obj) -> bool:
    return "entangle_checkpoint" in obj


def split(obj, ctx) -> Parts:
    version = obj["entangle_checkpoint"]
    if version != ENTANGLE_CHECKPOINT_VERSION:
        raise CheckpointError(
            f"entangle checkpoint version {version!r} is not supported (this entangle reads "
            f"version {ENTANGLE_CHECKPOINT_VERSION}); upgrade entangle"
        )
    notes: list[str] = []
    head = obj.get("head")
    meta = dict(obj.get("meta") or {})
    arch = meta.get("arch")
    head = None if head is None else unwrap(head, "head", "entangle", notes)
    return Parts(
        unwrap(obj.get("backbone"), "backbone", "entangle", notes),
        head,
        meta,
        notes=notes,
        # a run with --head-mlp-layers: Sequential(ReLUMLP, GCDHead), keys 0.mlp.* / 1.*
        head_kind="mlp+gcd" if head and any(k.startswith("0.") for k in head) else "gcd",
        arch=arch.get("backbone") if isinstance(arch, dict) else None,
    )


LAYOUT = register(
    Layout(
        "entangle",
        "entangle (train, demo, save_checkpoint)",
        "backbone + class head, architecture from meta.arch",
        recognise,
        split,
        order=0,
    )
)
