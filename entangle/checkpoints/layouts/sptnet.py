"""SPTNet (Visual-AI/SPTNet ``train_spt.py``): ``torch.save(model.state_dict())`` of
``Sequential(prompter, Sequential(backbone, DINOHead))`` as ``dinoB16_best_trainul.pt``: keys
``0.*`` (the prompter: ``0.patch``, or ``0.0.pad_*`` + ``0.1.patch`` for ``prompt_type
'all'``), ``1.0.*`` (the ViT) and ``1.1.*`` (the class head). The prompter acts on the input
images, so entangle's backbone applies it first
(:class:`entangle.models.prompters.PromptedBackbone`).
"""

from __future__ import annotations

from entangle.checkpoints.keys import str_keyed, strip, sub, unwrap
from entangle.checkpoints.registry import Layout, Parts, register


def recognise(obj) -> bool:
    if not str_keyed(obj):
        return False
    keys = strip(obj, "module.")
    return "1.0.cls_token" in keys and ("0.patch" in keys or "0.0.pad_up" in keys)


def split(obj, ctx) -> Parts:
    notes: list[str] = []
    sd = unwrap(obj, "model", "sptnet", notes)
    prompter = sub(sd, "0.")
    kind = "patch" if "patch" in prompter else "pad + patch"
    notes.append(f"SPTNet {kind} prompter applied to the input images before the backbone")
    return Parts(sub(sd, "1.0."), sub(sd, "1.1."), {}, notes=notes, prompter=prompter)


LAYOUT = register(
    Layout(
        "sptnet",
        "SPTNet (train_spt.py: Sequential(prompter, Sequential(ViT, DINOHead)))",
        "prompter (applied to the images) + backbone + class head",
        recognise,
        split,
        order=25,
    )
)
