"""CMS (sua-choi/CMS, methods/contrastive_meanshift_training.py): ``nn.DataParallel(DINO)``
saved raw as ``model.pt`` and, for the best epoch, as ``{"k": estimated k, "model_state_dict":
...}`` in ``model_best.pt``. ``DINO`` (models/dino.py) holds ``backbone`` (a DINO ViT-B/16) and
``img_projection_head`` (a DINOHead with out_dim = feat_dim); keys carry ``module.``. CMS has
no class head: it clusters the projected, normalised features (mean-shift, then agglomerative
with the estimated k)."""

from __future__ import annotations

from entangle.checkpoints.keys import is_vit_state, plain_meta, str_keyed, strip, sub, unwrap
from entangle.checkpoints.registry import Layout, Parts, register


def _state(obj):
    return obj["model_state_dict"] if str_keyed(obj.get("model_state_dict")) else obj


def recognise(obj) -> bool:
    sd = _state(obj)
    if not str_keyed(sd):
        return False
    sd = strip(sd, "module.")
    return is_vit_state(sub(sd, "backbone.")) and any(
        k.startswith("img_projection_head.") for k in sd
    )


def split(obj, ctx) -> Parts:
    notes: list[str] = []
    sd = unwrap(
        _state(obj), "model_state_dict" if "model_state_dict" in obj else "model", "cms", notes
    )
    meta = plain_meta(obj, ("k",))
    if "k" in meta:
        notes.append(f"CMS estimated k = {meta['k']} clusters")
    notes.append("CMS has no class head: cluster with k-means (CMS clusters the projection)")
    return Parts(
        sub(sd, "backbone."),
        None,
        meta,
        extras={"projector": sub(sd, "img_projection_head.")},
        notes=notes,
    )


LAYOUT = register(
    Layout(
        "cms",
        "CMS (model.pt raw DataParallel state dict; model_best.pt {'k', 'model_state_dict'})",
        "backbone + img_projection_head (as projector); k as meta; no class head",
        recognise,
        split,
        order=30,
    )
)
