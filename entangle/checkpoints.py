"""Safe checkpoint loading, format detection, and entangle's own checkpoint writer.

Checkpoints are untrusted files: a pickle can run code on load. :func:`safe_load` uses
``torch.load(weights_only=True)`` and allow-lists only numpy scalars and dtypes (which GCD
codebases store as ``best_*_acc``), inside a context manager so nothing leaks into the
process-wide allow-list. Anything else is refused unless the user passes
``--trust-checkpoint`` (``trust=True``).

Layouts recognised by :func:`detect_format` (``module.`` prefixes from DDP are stripped):

- ``entangle``: ``{"entangle_checkpoint": 1, "backbone": sd, "head": sd | None, "meta": {}}``
  written by :func:`save_checkpoint`;
- ``simgcd``: ``{"model": sd}`` where ``sd`` is ``Sequential(ViT, DINOHead)``: ``0.*`` / ``1.*``;
- ``eagc``: the EAGC code's best checkpoint: ``backbone_state_dict`` and
  ``projector_state_dict`` = ``Sequential(MLP_Head, DINOHead)`` (``0.mlp.*``, ``1.*``),
  ``epoch`` and ``best_{all,old,new}_acc`` (numpy float64);
- ``selex``: the EAGC code's SelEx checkpoint: ``backbone_state_dict``,
  ``mlp_head_state_dict`` (``MLP_Head``) and ``projector_state_dict`` (DINO's projection
  head, 65536 prototypes); SelEx clusters with k-means and has no class head;
- ``vit``: a plain ViT state dict (DINO / DINOv2 weights, reference models), optionally
  inside ``teacher`` / ``model`` / ``state_dict`` with ``backbone.`` prefixes.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.gcd.heads import (
    DINOProjectionHead,
    GCDHead,
    ReLUMLP,
    infer_dino_projection_config,
    infer_head_config,
    infer_relu_mlp_config,
    remap_weight_norm_keys,
)
from entangle.gcd.vit import VisionTransformer, ViTConfig, backbone_state_from, infer_vit_config

FORMATS = ("entangle", "simgcd", "eagc", "selex", "vit")
ENTANGLE_CHECKPOINT_VERSION = 1
_TRUST_HINT = (
    "If you trust the file's source, pass --trust-checkpoint (trust=True); loading it then "
    "runs whatever code the file names."
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


def _unsafe_globals(path: Path, message: str) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: fall back to the error message
        names = []
    return names or re.findall(r"GLOBAL ([\w.]+)", message)


def safe_load(path: str | Path, *, trust: bool = False) -> Any:
    """Load a checkpoint on the CPU without running code from it.

    Args:
        path: a file written by ``torch.save``.
        trust: load with ``weights_only=False`` (runs arbitrary code from the file).

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or needs code to load
            (the message names the offending globals and ``--trust-checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if not trust and re.search(r"Unsupported global|Can only build|allowlist", msg):
            names = ", ".join(_unsafe_globals(path, msg)) or "unknown"
            raise CheckpointError(
                f"{path} needs code beyond tensors and numpy scalars to load ({names}); "
                f"entangle refused to run it. {_TRUST_HINT}"
            ) from None
        raise CheckpointError(_corrupt(path, exc)) from None
    except Exception as exc:  # torch/zip/pickle raise many types for damaged files
        raise CheckpointError(_corrupt(path, exc, trust)) from None


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


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key that has it (a DDP ``module.``, say)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state.items()}


def _sub(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under ``prefix``, with it removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


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
    spec = getattr(module, "arch_spec", None)  # e.g. the digits backbone
    return _check_meta(spec() if callable(spec) else spec, "arch_spec") if spec else None


def save_checkpoint(
    path: str | Path, backbone: nn.Module, head: nn.Module | None, meta: Mapping | None = None
) -> Path:
    """Write an entangle checkpoint: state dicts and plain metadata only, atomically.

    The file loads with ``weights_only=True``. The architecture goes into ``meta["arch"]``
    (ViT config, head config, or a module's ``arch_spec`` -- ``{"factory":
    "entangle.module:function", "kwargs": {...}}``) so :func:`load_gcd_checkpoint` can
    rebuild the models. A crash mid-write leaves any previous file intact.

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


# ------------------------------------------------------------------------ format detection


def _str_keyed(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj)


def detect_format(obj: Any) -> str:
    """Name the layout of a loaded checkpoint object: one of :data:`FORMATS`.

    Raises:
        CheckpointError: unknown layout (the message lists the top-level keys).
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"expected a checkpoint dict, got {type(obj).__name__}; a pickled whole model is "
            "not supported -- save its state_dict()"
        )
    if "entangle_checkpoint" in obj:
        version = obj["entangle_checkpoint"]
        if version != ENTANGLE_CHECKPOINT_VERSION:
            raise CheckpointError(
                f"entangle checkpoint version {version!r} is not supported (this entangle reads "
                f"version {ENTANGLE_CHECKPOINT_VERSION}); upgrade entangle"
            )
        return "entangle"
    if "backbone_state_dict" in obj:
        return "selex" if "mlp_head_state_dict" in obj else "eagc"
    inner = obj.get("model") if _str_keyed(obj.get("model")) else obj
    keys = _strip(inner, "module.") if _str_keyed(inner) else {}
    if "0.cls_token" in keys and any(k.startswith("1.") for k in keys):
        return "simgcd"
    if _str_keyed(obj) and "cls_token" in backbone_state_from(obj):
        return "vit"
    shown = ", ".join(sorted(map(str, obj))[:12])
    raise CheckpointError(
        f"unrecognised checkpoint layout (top-level keys: {shown}); entangle reads "
        f"{', '.join(FORMATS)} layouts. For anything else pass --model package.module:factory"
    )


# ---------------------------------------------------------------------------------- loading


@dataclass
class LoadedCheckpoint:
    """Models rebuilt from a checkpoint, weights loaded strictly, in eval mode on the CPU.

    Attributes:
        format: the detected layout (:data:`FORMATS`, or ``"custom"`` with a factory).
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


@dataclass
class _Parts:
    backbone: dict
    head: dict | None
    meta: dict
    extras: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _plain_meta(obj: Mapping, keys: tuple[str, ...]) -> dict:
    meta = {}
    for key in keys:
        value = obj.get(key)
        if isinstance(value, np.generic) or (
            isinstance(value, torch.Tensor) and value.numel() == 1
        ):
            value = value.item()  # numpy float64 accuracies become plain floats
        if isinstance(value, (int, float, str)):
            meta[key] = value
    return meta


def _split(obj: Mapping, fmt: str) -> _Parts:
    """Backbone / head / extra state dicts of a checkpoint in layout ``fmt``."""
    notes = []

    def unwrap(sd: Any, name: str) -> dict:
        if not _str_keyed(sd):
            raise CheckpointError(f"{fmt} checkpoint: {name} is not a state dict")
        if any(k.startswith("module.") for k in sd):
            notes.append(f"{name}: stripped the 'module.' prefix (distributed training)")
        return _strip(sd, "module.")

    acc_keys = ("epoch", "best_all_acc", "best_old_acc", "best_new_acc")
    if fmt == "entangle":
        head = obj.get("head")
        meta = dict(obj.get("meta") or {})
        return _Parts(
            unwrap(obj.get("backbone"), "backbone"),
            None if head is None else unwrap(head, "head"),
            meta,
            notes=notes,
        )
    if fmt == "simgcd":
        sd = unwrap(obj["model"] if "model" in obj else obj, "model")
        other = sorted({k.split(".")[0] for k in sd} - {"0", "1"})
        if other:
            raise CheckpointError(
                f"simgcd checkpoint has entries outside 0.* (ViT) and 1.* (DINOHead): {other}"
            )
        return _Parts(_sub(sd, "0."), _sub(sd, "1."), _plain_meta(obj, ("epoch",)), notes=notes)
    if fmt in ("eagc", "selex"):
        parts = _Parts(
            unwrap(obj["backbone_state_dict"], "backbone_state_dict"),
            None,
            _plain_meta(obj, acc_keys),
            notes=notes,
        )
        proj = obj.get("projector_state_dict")
        if fmt == "eagc":
            if proj is None:
                notes.append("no projector_state_dict: the file has no class head")
            else:
                parts.head = unwrap(proj, "projector_state_dict")
        else:
            parts.extras["mlp_head"] = unwrap(obj["mlp_head_state_dict"], "mlp_head_state_dict")
            if proj is not None:
                parts.extras["projector"] = unwrap(proj, "projector_state_dict")
            notes.append(
                "SelEx has no class head: cluster with k-means (SelEx clusters "
                "normalize(mlp_head(backbone(x))))"
            )
        return parts
    return _Parts(backbone_state_from(obj), None, {}, notes=notes)  # "vit"


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


def _build_backbone(state: dict, arch: Mapping | None, notes: list[str], fmt: str, src: str):
    try:
        if arch and arch.get("kind") == "vit":
            return VisionTransformer(ViTConfig(**arch["config"]))
        if arch and "factory" in arch:
            # the name comes from an untrusted file: only entangle's own builders are imported
            if not str(arch["factory"]).startswith("entangle."):
                raise CheckpointError(
                    f"{src} names a backbone factory outside entangle ({arch['factory']!r}); "
                    "pass --model package.module:factory if you trust it"
                )
            return _import_factory(arch["factory"])(**dict(arch.get("kwargs") or {}))
        if "stem.weight" in state:
            return _digits_backbone(state, notes)
        cfg = infer_vit_config(state)
    except (EntangleValueError, TypeError, KeyError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{src} ({fmt} layout): cannot rebuild the backbone from the file: {exc}. "
            "Pass --model package.module:factory"
        ) from None
    notes.append(
        f"backbone: ViT {cfg.embed_dim}-d, {cfg.depth} blocks, patch {cfg.patch_size}, "
        f"{cfg.img_size}px, {cfg.num_register_tokens} registers; {cfg.num_heads} heads assumed "
        "from the width (shapes do not record it)"
    )
    return VisionTransformer(cfg)


def _digits_backbone(state: dict, notes: list[str]) -> nn.Module:
    """entangle's residual-MLP digits backbone, its size read off ``stem`` / ``blocks.*``."""
    from entangle.gcd.backbones import ResidualMLP

    dim, in_dim = state["stem.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden_ratio = state["blocks.0.fc1.weight"].shape[0] // dim
    notes.append(f"backbone: residual MLP {in_dim}->{dim}-d, {depth} blocks")
    return ResidualMLP(in_dim=in_dim, dim=dim, depth=depth, hidden_ratio=hidden_ratio)


def _build_head(state: dict, fmt: str, src: str) -> nn.Module:
    try:
        if fmt == "eagc" and any(k.startswith("0.") for k in state):
            return nn.Sequential(
                ReLUMLP(**infer_relu_mlp_config(_sub(state, "0."))),
                GCDHead(**_gcd_args(infer_head_config(_sub(state, "1.")))),
            )
        return GCDHead(**_gcd_args(infer_head_config(state)))
    except EntangleValueError as exc:
        raise CheckpointError(f"{src} ({fmt} layout): cannot read the head: {exc}") from None


def _gcd_args(cfg: dict) -> dict:
    cfg = dict(cfg)
    return {"in_dim": cfg.pop("in_dim"), "num_classes": cfg.pop("num_classes"), **cfg}


def _head_in_dim(head: nn.Module) -> int | None:
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    return None if first is None else first.in_features


def load_gcd_checkpoint(
    path: str | Path, *, trust: bool = False, model_factory: str | None = None
) -> LoadedCheckpoint:
    """Load a GCD checkpoint of any known layout into freshly built models, strictly.

    The architecture is read from the tensors: ViT width, depth, patch and input size from
    ``pos_embed`` / ``blocks.*``; number of classes and projector depth from the head.

    Args:
        path: the checkpoint file.
        trust: allow code in the pickle (``--trust-checkpoint``).
        model_factory: ``"package.module:function"``, a zero-argument callable returning
            ``(backbone, head)`` (head may be ``None``) to load into instead.

    Raises:
        CheckpointError: unsafe, corrupt, unknown layout, missing/unexpected keys or shape
            mismatches (listed, with the detected format).
    """
    return load_gcd_object(
        safe_load(path, trust=trust), source=str(path), model_factory=model_factory
    )


def load_gcd_object(
    obj: Any, *, source: str = "<checkpoint>", model_factory: str | None = None
) -> LoadedCheckpoint:
    """:func:`load_gcd_checkpoint` on an object already loaded (e.g. by :func:`safe_load`)."""
    src = source
    factory = _import_factory(model_factory) if model_factory else None
    try:
        fmt = detect_format(obj)
    except CheckpointError:
        if factory is None or not _str_keyed(obj):
            raise
        fmt = "custom"
    parts = _split_custom(obj) if fmt == "custom" else _split(obj, fmt)
    notes = parts.notes
    arch = parts.meta.get("arch") if fmt == "entangle" else None
    arch = arch if isinstance(arch, Mapping) else {}

    if factory is not None:
        built = factory()
        if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)):
            raise EntangleTypeError(
                f"model factory {model_factory!r} must return (backbone, head) modules, got "
                f"{type(built).__name__}"
            )
        backbone, head = built
        notes.append(f"models built by {model_factory}")
    else:
        # built without memory or random init; the strict load below adopts the file's tensors
        with torch.device("meta"):
            backbone = _build_backbone(parts.backbone, arch.get("backbone"), notes, fmt, src)
            head = _build_head(parts.head, fmt, src) if parts.head is not None else None
    load = {"source": src, "fmt": fmt, "assign": factory is None}
    load_strict(backbone, parts.backbone, what="backbone", **load)
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
    for module in (backbone, head, *extras.values()):
        if module is not None:
            _check_materialised(module, src)
    num_classes = None
    if head is not None:
        last = next((m for m in head.modules() if isinstance(m, GCDHead)), None)
        num_classes = last.num_classes if last is not None else getattr(head, "num_classes", None)
    return LoadedCheckpoint(fmt, backbone, head, parts.meta, num_classes, notes, extras)


def _check_materialised(module: nn.Module, src: str) -> None:
    """Put ``module`` in eval mode; refuse one left with ``meta`` tensors the file did not fill."""
    empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise CheckpointError(f"{src}: the file leaves {empty[:5]} of the rebuilt model unset")
    module.eval()


def _split_custom(obj: Mapping) -> _Parts:
    """A flat state dict for a user factory: ``backbone.*``/``head.*``, ``0.*``/``1.*``, or
    all backbone."""
    sd = obj
    for key in ("state_dict", "model"):
        if _str_keyed(obj.get(key)):
            sd = obj[key]
    sd = _strip(sd, "module.")
    for bb, hd in (("backbone.", "head."), ("0.", "1.")):
        if all(k.startswith((bb, hd)) for k in sd):
            return _Parts(_sub(sd, bb), _sub(sd, hd) or None, {})
    return _Parts(dict(sd), None, {})
