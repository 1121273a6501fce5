"""SimGCD and its descendants (LegoGCD, ProtoGCD, AFGCD, Happy): ``train.py`` saves
``{"model": Sequential(backbone, DINOHead).state_dict(), "optimizer", "epoch"}``: keys ``0.*``
(the ViT) and ``1.*`` (the head), with ``module.`` from their DDP scripts (``train_mp.py``)."""

from __future__ import annotations

from entangle.checkpoints.keys import plain_meta, str_keyed, strip, sub, unwrap
from entangle.checkpoints.registry import Layout, Parts, register
from entangle.checkpoints.safe import CheckpointError


def recognise(obj) -> bool:
    inner = obj.get("model") if str_keyed(obj.get("model")) else obj
    keys = strip(inner, "module.") if str_keyed(inner) else {}
    return "0.cls_token" in keys and any(k.startswith("1.") for k in keys)


def split(obj, ctx) -> Parts:
    notes: list[str] = []
    sd = unwrap(obj["model"] if "model" in obj else obj, "model", "simgcd", notes)
    other = sorted({k.split(".")[0] for k in sd} - {"0", "1"})
    if other:
        raise CheckpointError(
            f"simgcd checkpoint has entries outside 0.* (ViT) and 1.* (DINOHead): {other}"
        )
    meta = plain_meta(obj, ("epoch",))
    if isinstance(meta.get("epoch"), int) and meta["epoch"] >= 1:
        # train.py saves epoch + 1 (epochs finished); entangle's meta["epoch"] is the 0-based
        # index of the last epoch trained, which analyze reads the teacher temperature at
        meta["epochs_done"] = meta["epoch"]
        meta["epoch"] -= 1
        notes.append(
            f"epoch {meta['epochs_done']} saved as epochs done: last epoch index {meta['epoch']}"
        )
    return Parts(sub(sd, "0."), sub(sd, "1."), meta, notes=notes)


LAYOUT = register(
    Layout(
        "simgcd",
        "SimGCD, LegoGCD, ProtoGCD, AFGCD, Happy (train.py / train_mp.py)",
        "backbone + class head (DINOHead) from {'model': Sequential(ViT, head)}",
        recognise,
        split,
        order=20,
    )
)
