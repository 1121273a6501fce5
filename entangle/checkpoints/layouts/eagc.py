"""The EAGC authors' code (HaiyangZheng/EAGC): its SimGCD/LegoGCD best checkpoint and its SelEx
checkpoint.

``methods/SimGCD.py`` saves ``{"epoch", "backbone_state_dict", "projector_state_dict",
"best_all_acc", "best_old_acc", "best_new_acc"}`` (accuracies as numpy float64), the projector
being ``Sequential(MLP_Head, DINOHead)`` (``0.mlp.*``, ``1.*``) or a bare ``DINOHead``;
``methods/SelEx.py`` adds ``mlp_head_state_dict`` and saves DINO's projection head (65536
prototypes) as ``projector_state_dict``: SelEx has no class head and clusters with k-means.
"""

from __future__ import annotations

from entangle.checkpoints.keys import plain_meta, unwrap
from entangle.checkpoints.registry import Layout, Parts, register

_ACC_KEYS = ("epoch", "best_all_acc", "best_old_acc", "best_new_acc")


def _backbone(obj, fmt: str, notes: list[str]) -> Parts:
    return Parts(
        unwrap(obj["backbone_state_dict"], "backbone_state_dict", fmt, notes),
        None,
        plain_meta(obj, _ACC_KEYS),
        notes=notes,
    )


def split_eagc(obj, ctx) -> Parts:
    notes: list[str] = []
    parts = _backbone(obj, "eagc", notes)
    proj = obj.get("projector_state_dict")
    if proj is None:
        notes.append("no projector_state_dict: the file has no class head")
    else:
        parts.head = unwrap(proj, "projector_state_dict", "eagc", notes)
        if any(k.startswith("0.") for k in parts.head):
            parts.head_kind = "mlp+gcd"
    return parts


def split_selex(obj, ctx) -> Parts:
    notes: list[str] = []
    parts = _backbone(obj, "selex", notes)
    parts.extras["mlp_head"] = unwrap(
        obj["mlp_head_state_dict"], "mlp_head_state_dict", "selex", notes
    )
    if obj.get("projector_state_dict") is not None:
        parts.extras["projector"] = unwrap(
            obj["projector_state_dict"], "projector_state_dict", "selex", notes
        )
    notes.append(
        "SelEx has no class head: cluster with k-means (SelEx clusters "
        "normalize(mlp_head(backbone(x))))"
    )
    return parts


SELEX = register(
    Layout(
        "selex",
        "EAGC's SelEx (methods/SelEx.py)",
        "backbone, mlp_head and DINO projector; no class head (k-means)",
        lambda obj: "backbone_state_dict" in obj and "mlp_head_state_dict" in obj,
        split_selex,
        order=10,
    )
)
EAGC = register(
    Layout(
        "eagc",
        "EAGC (methods/SimGCD.py, methods/LegoGCD.py best checkpoints)",
        "backbone + class head (optionally behind an MLP_Head), best accuracies as meta",
        lambda obj: "backbone_state_dict" in obj,
        split_eagc,
        order=11,
    )
)
