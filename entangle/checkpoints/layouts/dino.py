"""DINO's training checkpoint (facebookresearch/dino main_dino.py ``checkpoint.pth``):
``{"student", "teacher", "optimizer", "epoch", "args", "dino_loss"}`` where ``teacher`` is
``MultiCropWrapper(backbone, head)``: ``backbone.*`` (the ViT) and ``head.*`` (the DINO
projection head). DINO evaluates the teacher; so does entangle. ``args`` is an
``argparse.Namespace``: such a file loads only with ``--trust-checkpoint``. DINOv2's
``teacher_checkpoint.pth`` (``{"teacher": ...}`` with ``dino_head.*`` / ``ibot_head.*``) is
read the same way."""

from __future__ import annotations

from entangle.checkpoints.keys import backbone_state_from, is_vit_state, str_keyed
from entangle.checkpoints.registry import Layout, Parts, register

_PRETRAINING_HEADS = ("dino_head.", "ibot_head.")


def recognise(obj) -> bool:
    teacher = obj.get("teacher")
    return str_keyed(teacher) and is_vit_state(backbone_state_from(teacher))


def split(obj, ctx) -> Parts:
    teacher = obj["teacher"]
    state = backbone_state_from(teacher)
    state = {k: v for k, v in state.items() if not k.startswith(_PRETRAINING_HEADS)}
    notes = ["DINO checkpoint: the teacher's backbone (backbone. prefix stripped)"]
    parts = Parts(state, None, {}, notes=notes)
    if any(k.removeprefix("module.").startswith(("head.", *_PRETRAINING_HEADS)) for k in teacher):
        notes.append("the pretraining projection head (DINO's head.*) is not loaded")
    epoch = obj.get("epoch")
    if isinstance(epoch, int):
        parts.meta["epoch"] = epoch
    return parts


LAYOUT = register(
    Layout(
        "dino",
        "DINO pretraining checkpoint (checkpoint.pth, 'teacher' key); DINOv2 teacher_checkpoint",
        "the teacher's ViT; no class head (the pretraining head is not loaded)",
        recognise,
        split,
        order=40,
    )
)
