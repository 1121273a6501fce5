"""Checkpoints: safe loading, a registry of codebase layouts, and model rebuilding.

- :mod:`~entangle.checkpoints.safe`: ``safe_load`` (tensors and numpy scalars only);
- :mod:`~entangle.checkpoints.registry` and :mod:`~entangle.checkpoints.layouts`: one module
  per codebase layout (SimGCD family, EAGC, GCD / SelEx / InfoSieve / PromptCAL, CMS, DINO,
  DINOv2, entangle's own), each a ``recognise`` / ``split`` pair;
- :mod:`~entangle.checkpoints.build`: ``load_gcd_checkpoint`` rebuilds the models
  (:mod:`~entangle.checkpoints.rebuild`: from the tensors' shapes) and loads them strictly;
- :mod:`~entangle.checkpoints.writer`: ``save_checkpoint`` (entangle's layout).

See docs/checkpoints.md.
"""

import entangle.checkpoints.layouts  # noqa: F401  (registers every layout)
from entangle.checkpoints.build import (
    LoadedCheckpoint,
    _head_in_dim,
    load_gcd_checkpoint,
    load_gcd_object,
)
from entangle.checkpoints.keys import backbone_state_from
from entangle.checkpoints.pretrained import load_pretrained_vit, load_vit_weights
from entangle.checkpoints.registry import (
    Layout,
    Parts,
    detect_format,
    get_layout,
    list_layouts,
)
from entangle.checkpoints.safe import CheckpointError, safe_load, unsafe_globals
from entangle.checkpoints.strict import load_strict
from entangle.checkpoints.writer import ENTANGLE_CHECKPOINT_VERSION, save_checkpoint

FORMATS = tuple(layout.name for layout in list_layouts())

__all__ = [
    "ENTANGLE_CHECKPOINT_VERSION",
    "FORMATS",
    "CheckpointError",
    "Layout",
    "LoadedCheckpoint",
    "Parts",
    "_head_in_dim",
    "backbone_state_from",
    "detect_format",
    "get_layout",
    "list_layouts",
    "load_gcd_checkpoint",
    "load_gcd_object",
    "load_pretrained_vit",
    "load_strict",
    "load_vit_weights",
    "safe_load",
    "save_checkpoint",
    "unsafe_globals",
]
