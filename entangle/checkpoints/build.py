"""Rebuild models from a checkpoint of any registered layout and load them strictly.

:func:`load_gcd_checkpoint` loads a file with :func:`~entangle.checkpoints.safe.safe_load`,
names its layout (:func:`~entangle.checkpoints.registry.detect_format`, or ``format=``), lets
the layout split it into state dicts (:class:`~entangle.checkpoints.registry.Parts`), builds
the models from the tensors' shapes (:mod:`entangle.checkpoints.rebuild`) and loads them
strictly. See docs/checkpoints.md for the layouts.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from entangle.checkpoints.keys import str_keyed, strip, sub

# ARCH_KINDS and vit_weight_count lived here before rebuild.py: re-exported for old imports
from entangle.checkpoints.rebuild import ARCH_KINDS as ARCH_KINDS
from entangle.checkpoints.rebuild import (
    _build_backbone,
    _build_head,
    _head_in_dim,
    _prompted,
)
from entangle.checkpoints.rebuild import vit_weight_count as vit_weight_count
from entangle.checkpoints.registry import Parts, SplitContext, detect_format, get_layout
from entangle.checkpoints.safe import CheckpointError, safe_load
from entangle.checkpoints.strict import load_strict
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.heads import (
    DINOProjectionHead,
    GCDHead,
    ReLUMLP,
    infer_dino_projection_config,
    infer_relu_mlp_config,
)

# ---------------------------------------------------------------------------------- loading


@dataclass
class LoadedCheckpoint:
    """Models rebuilt from a checkpoint, weights loaded strictly, in eval mode on the CPU.

    Attributes:
        format: the layout's name (``entangle analyze --list-formats``; ``"custom"`` with a
            factory).
        backbone: images ``[n, 3, H, W]`` to features ``z [n, D]``.
        head: features to ``(proj, logits [n, K])``; ``None`` when the file has no class head.
        meta: the file's metadata (epoch, best accuracies as floats, entangle meta).
        num_classes: ``K`` read off the head's classifier, or ``None``.
        notes: what the loader assumed or changed, for the report.
        extras: other heads in the file (SelEx: ``mlp_head``, ``projector``).
    """

    format: str
    backbone: nn.Module
    head: nn.Module | None
    meta: dict
    num_classes: int | None
    notes: list[str] = field(default_factory=list)
    extras: dict[str, nn.Module] = field(default_factory=dict)


def _import_factory(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EntangleValueError(
            f"model factory must look like 'package.module:function', got {spec!r}"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EntangleValueError(f"cannot import model factory {spec!r}: {exc}") from exc
    if not callable(fn):
        raise EntangleTypeError(f"model factory {spec!r} is not callable")
    return fn


def load_gcd_checkpoint(
    path: str | Path,
    *,
    trust: bool = False,
    model_factory: str | None = None,
    format: str | None = None,
    head: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a GCD checkpoint of any known layout into freshly built models, strictly.

    The architecture is read from the tensors: ViT width, depth, patch and input size from
    ``pos_embed`` / ``blocks.*``; number of classes and projector depth from the head.

    Args:
        path: the checkpoint file.
        trust: allow code in the pickle (``--trust-checkpoint``).
        model_factory: ``"package.module:function"``, a zero-argument callable returning
            ``(backbone, head)`` (head may be ``None``) to load into instead.
        format: force this layout (a name of ``entangle analyze --list-formats``) instead of
            detecting it.
        head: a separate head file for the layouts that keep it apart (GCD's
            ``model_proj_head.pt``; by default found beside ``path``).

    Raises:
        CheckpointError: unsafe, corrupt, unknown layout, missing/unexpected keys or shape
            mismatches (listed, with the detected format).
    """
    path = Path(path)
    ctx = SplitContext(
        str(path),
        path=path,
        head_path=None if head is None else Path(head),
        load=lambda p: safe_load(p, trust=trust),
    )
    return load_gcd_object(
        safe_load(path, trust=trust),
        source=str(path),
        model_factory=model_factory,
        format=format,
        context=ctx,
    )


def load_gcd_object(
    obj: Any,
    *,
    source: str = "<checkpoint>",
    model_factory: str | None = None,
    format: str | None = None,
    context: SplitContext | None = None,
) -> LoadedCheckpoint:
    """:func:`load_gcd_checkpoint` on an object already loaded (e.g. by :func:`safe_load`)."""
    src = source
    factory = _import_factory(model_factory) if model_factory else None
    fmt = _layout_name(obj, format, factory, src)
    parts = _split_parts(obj, fmt, context or SplitContext(src), src)
    notes = parts.notes
    if factory is not None:
        backbone, head = _factory_models(factory, model_factory)
        notes.append(f"models built by {model_factory}")
    else:
        # built without memory or random init; the strict load below adopts the file's tensors
        with torch.device("meta"):
            backbone = _build_backbone(parts.backbone, parts.arch, notes, fmt, src)
            head = (
                _build_head(parts.head, parts.head_kind, fmt, src)
                if parts.head is not None
                else None
            )
    backbone = _load_models(backbone, head, parts, fmt, src, assign=factory is None)
    extras = _load_extras(parts, fmt, src)
    for module in (backbone, head, *extras.values()):
        if module is not None:
            _check_materialised(module, src)
    num_classes = None
    if head is not None:
        last = next((m for m in head.modules() if isinstance(m, GCDHead)), None)
        num_classes = last.num_classes if last is not None else getattr(head, "num_classes", None)
    return LoadedCheckpoint(fmt, backbone, head, parts.meta, num_classes, notes, extras)


def _layout_name(obj: Any, format: str | None, factory, src: str) -> str:
    """The layout of ``obj``: ``format`` when given (refused if ``obj`` does not fit it), else
    detected; ``"custom"`` when none fits and a factory will take a flat state dict."""
    if format is not None:
        layout = get_layout(format)
        if not isinstance(obj, Mapping) or not layout.recognise(obj):
            keys = sorted(map(str, obj))[:12] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(
                f"{src}: not a {layout.name} checkpoint (top-level keys: {keys}); drop --format "
                "to detect the layout, or see entangle analyze --list-formats"
            )
        return layout.name
    try:
        return detect_format(obj)
    except CheckpointError:
        if factory is None or not str_keyed(obj):
            raise
        return "custom"


def _split_parts(obj: Any, fmt: str, ctx: SplitContext, src: str) -> Parts:
    """``obj`` split into state dicts by its layout ``fmt``."""
    if fmt == "custom":
        return _split_custom(obj)
    try:
        return get_layout(fmt).split(obj, ctx)
    except (KeyError, TypeError, AttributeError) as exc:  # a forced format that does not fit
        raise CheckpointError(
            f"{src}: not a {fmt} checkpoint ({type(exc).__name__}: {exc}); top-level keys: "
            f"{', '.join(sorted(map(str, obj))[:12])}"
        ) from None


def _factory_models(factory, model_factory: str) -> tuple[nn.Module, nn.Module | None]:
    """``(backbone, head)`` from the user's factory, refused unless it returns modules."""
    built = factory()
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)):
        raise EntangleTypeError(
            f"model factory {model_factory!r} must return (backbone, head) modules, got "
            f"{type(built).__name__}"
        )
    return built


def _load_models(
    backbone: nn.Module, head: nn.Module | None, parts: Parts, fmt: str, src: str, *, assign
) -> nn.Module:
    """Load the file's backbone (and prompter) and head weights strictly; the backbone, behind
    its prompter when the file has one. ``assign``: adopt the file's tensors (meta modules)."""
    notes = parts.notes
    load = {"source": src, "fmt": fmt, "assign": assign}
    load_strict(backbone, parts.backbone, what="backbone", **load)
    if parts.prompter is not None:
        backbone = _prompted(backbone, parts.prompter, src, fmt)
    if head is not None and parts.head is None:
        notes.append("the file has no head weights: the factory's head keeps its own")
    elif parts.head is not None:
        if head is None:
            notes.append("head weights in the file ignored: the factory returned no head")
        else:
            load_strict(head, parts.head, what="head", **load)
    dim = getattr(backbone, "feature_dim", None)
    if head is not None and dim is not None and _head_in_dim(head) not in (None, dim):
        raise CheckpointError(
            f"{src}: the head expects {_head_in_dim(head)}-d features but the backbone gives "
            f"{dim}-d; backbone and head come from different models"
        )
    return backbone


def _load_extras(parts: Parts, fmt: str, src: str) -> dict[str, nn.Module]:
    """The file's other heads (SelEx: ``mlp_head``, ``projector``), rebuilt and loaded."""
    extras: dict[str, nn.Module] = {}
    with torch.device("meta"):
        if "mlp_head" in parts.extras:
            extras["mlp_head"] = ReLUMLP(**infer_relu_mlp_config(parts.extras["mlp_head"]))
        if "projector" in parts.extras:
            pcfg = infer_dino_projection_config(parts.extras["projector"])
            extras["projector"] = DINOProjectionHead(
                pcfg.pop("in_dim"), pcfg.pop("out_dim"), **pcfg
            )
    for name, module in extras.items():
        load_strict(module, parts.extras[name], what=name, source=src, fmt=fmt, assign=True)
    return extras


def _check_materialised(module: nn.Module, src: str) -> None:
    """Put ``module`` in eval mode; refuse one left with ``meta`` tensors the file did not fill."""
    empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise CheckpointError(f"{src}: the file leaves {empty[:5]} of the rebuilt model unset")
    module.eval()


def _split_custom(obj: Mapping) -> Parts:
    """A flat state dict for a user factory: ``backbone.*``/``head.*``, ``0.*``/``1.*``, or
    all backbone."""
    sd = obj
    for key in ("state_dict", "model"):
        if str_keyed(obj.get(key)):
            sd = obj[key]
    sd = strip(sd, "module.")
    for bb, hd in (("backbone.", "head."), ("0.", "1.")):
        if all(k.startswith((bb, hd)) for k in sd):
            return Parts(sub(sd, bb), sub(sd, hd) or None, {})
    return Parts(dict(sd), None, {})
