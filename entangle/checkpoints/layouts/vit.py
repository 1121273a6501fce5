"""A plain ViT state dict: released DINO / DINOv2 weights, and the backbone file of the
original GCD code and its line (GCD, SelEx, InfoSieve, PromptCAL).

Those codebases (``methods/contrastive_training/contrastive_training.py``) save
``model.state_dict()`` to ``model.pt`` (``model_best.pt`` for the best epoch; PromptCAL adds
``_best_<postfix>`` and ``_<epoch>``) and the projection head (a DINOHead with 65536
prototypes) beside it as ``model_proj_head.pt`` (``model_proj_head_best.pt``, ...). entangle
finds that sibling file, or takes ``--head FILE``. SelEx's DINOv2 runs store a
``vitb14_reg4`` backbone (registers, layer scale), read the same way. The projection head is
not a class head: these methods cluster with k-means.
"""

from __future__ import annotations

from pathlib import Path

from entangle.checkpoints.keys import backbone_state_from, is_vit_state, str_keyed, unwrap
from entangle.checkpoints.registry import Layout, Parts, register
from entangle.checkpoints.safe import CheckpointError
from entangle.errors import EntangleValueError
from entangle.models.heads import infer_head_config

HEAD_MARK = "_proj_head"


def recognise(obj) -> bool:
    return str_keyed(obj) and is_vit_state(backbone_state_from(obj))


def sibling_head(path: Path) -> Path | None:
    """The projection-head file the GCD code saves beside ``path``, if it exists.

    ``model.pt`` -> ``model_proj_head.pt``, ``model_best.pt`` -> ``model_proj_head_best.pt``:
    ``_proj_head`` goes after the file name's stem or after one of its ``_``-parts.
    """
    stem, suffix = path.stem, path.suffix
    cuts = [len(stem)] + [i for i in range(len(stem) - 1, 0, -1) if stem[i] == "_"]
    for cut in cuts:
        candidate = path.with_name(stem[:cut] + HEAD_MARK + stem[cut:] + suffix)
        if candidate.is_file():
            return candidate
    return None


def _is_class_head(state: dict) -> bool:
    try:
        infer_head_config(state)
    except EntangleValueError:
        return False
    return True


def split(obj, ctx) -> Parts:
    state = backbone_state_from(obj)
    notes: list[str] = []
    if "prompt_tokens" in state:
        layers, prompts, _ = state["prompt_tokens"].shape
        notes.append(
            f"PromptCAL VPT backbone: {prompts} prompts in {layers} layers (n_shallow_prompts "
            "= 0 assumed, as PromptCAL's scripts use; the file cannot say)"
        )
    parts = Parts(state, None, {}, notes=notes)
    head_path = ctx.head_path
    if head_path is None and ctx.path is not None:
        head_path = sibling_head(ctx.path)
    if head_path is None:
        notes.append("plain ViT state dict, no head file beside it (pass --head FILE)")
        return parts
    if ctx.load is None:
        raise CheckpointError(f"{ctx.source}: cannot read the head file {head_path} here")
    head = unwrap(ctx.load(head_path), f"head file {head_path.name}", "vit", notes)
    if _is_class_head(head):
        parts.head = head
        notes.append(f"class head from {head_path.name}")
    else:
        parts.extras["projector"] = head
        notes.append(
            f"projection head from {head_path.name} (GCD-style DINOHead): no class head, "
            "cluster with k-means as these methods do"
        )
    parts.meta["head_file"] = str(head_path)
    return parts


LAYOUT = register(
    Layout(
        "vit",
        "GCD, SelEx (DINO and DINOv2 vitb14_reg4), InfoSieve, PromptCAL model.pt + "
        "model_proj_head.pt; released DINO / DINOv2 weights",
        "the ViT; the sibling (or --head) projection head as projector, or a class head",
        recognise,
        split,
        order=90,
    )
)
