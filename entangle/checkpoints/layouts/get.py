"""GET (enguangW/GET ``s2_GET.py``): ``{"backbone": CLIP model state dict, "model_tes_projector",
"ln_t", "proj": DINOHead, "optimizer", "epoch"}``. The image branch GET classifies is
``proj(visual(x))`` with ``visual.use_proj = False`` (768-d ``ln_post`` features): entangle
rebuilds CLIP's ViT-B/16 visual (:mod:`entangle.models.vit_clip`) and the head. The text side
(CLIP's text transformer, the TES projector, ``ln_t``) is not rebuilt: GET's text and "sum"
predictions need its TES CLIP."""

from __future__ import annotations

from entangle.checkpoints.keys import plain_meta, str_keyed, strip, sub, unwrap
from entangle.checkpoints.registry import Layout, Parts, register


def recognise(obj) -> bool:
    backbone = obj.get("backbone")
    return (
        str_keyed(backbone)
        and "proj" in obj
        and "visual.conv1.weight" in strip(backbone, "module.")
    )


def split(obj, ctx) -> Parts:
    notes: list[str] = []
    clip = unwrap(obj["backbone"], "backbone", "get", notes)
    text_keys = sum(1 for k in clip if not k.startswith("visual."))
    notes.append(
        f"GET: CLIP visual encoder + class head; the text side ({text_keys} CLIP text tensors, "
        "model_tes_projector, ln_t) is not rebuilt: image-branch analysis only"
    )
    return Parts(
        sub(clip, "visual."),
        unwrap(obj["proj"], "proj", "get", notes),
        plain_meta(obj, ("epoch",)),
        notes=notes,
    )


LAYOUT = register(
    Layout(
        "get",
        "GET (s2_GET.py: CLIP ViT-B/16 'backbone', 'proj' DINOHead, TES modules)",
        "CLIP visual backbone (ln_post features, use_proj False) + class head; text side not",
        recognise,
        split,
        order=15,
    )
)
