"""DINOv2 training checkpoints (facebookresearch/dinov2, fvcore ``model_NNNN.pth``):
``{"model": SSLMetaArch state dict, "optimizer", "iteration"}`` with ``teacher.backbone.*`` /
``student.backbone.*`` and the ``dino_head`` / ``ibot_head`` of each; with block chunking
(``block_chunks > 0``) the blocks are ``blocks.<chunk>.<i>.*``. entangle takes the teacher's
backbone, unchunks the block keys and drops the pretraining heads."""

from __future__ import annotations

import re

from entangle.checkpoints.keys import backbone_state_from, is_vit_state, str_keyed, strip, sub
from entangle.checkpoints.registry import Layout, Parts, register

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.(.*)$")


def _backbone(model: dict) -> tuple[dict, str]:
    model = strip(model, "module.")
    for prefix in ("teacher.backbone.", "student.backbone.", "backbone."):
        inner = sub(model, prefix)
        if inner:
            return inner, prefix
    return dict(model), ""


def recognise(obj) -> bool:
    model = obj.get("model")
    if not str_keyed(model):
        return False
    state, _ = _backbone(model)
    return is_vit_state(backbone_state_from(state))


def split(obj, ctx) -> Parts:
    state, prefix = _backbone(obj["model"])
    notes = [f"DINOv2 checkpoint: backbone from {prefix or 'the model'}* ({len(state)} tensors)"]
    unchunked = {}
    for key, value in state.items():
        m = _CHUNKED.match(key)
        unchunked[f"blocks.{m.group(1)}.{m.group(2)}" if m else key] = value
    if any(_CHUNKED.match(k) for k in state):
        notes.append("block chunks blocks.C.I.* renamed to blocks.I.*")
    parts = Parts(backbone_state_from(unchunked), None, {}, notes=notes)
    iteration = obj.get("iteration")
    if isinstance(iteration, int):
        parts.meta["iteration"] = iteration
    return parts


LAYOUT = register(
    Layout(
        "dinov2",
        "DINOv2 training checkpoint ('model' key: teacher.backbone.*, block chunks)",
        "the teacher's ViT (registers, layer scale); no class head",
        recognise,
        split,
        order=41,
    )
)
