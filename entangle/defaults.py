"""The one home of EAGC's, SOC's and the SimGCD objective's defaults (docs/quantities.md,
docs/protocol.md; docs/architecture.md).

Every signature, dataclass field and CLI option with these defaults reads them from here
(the CLI through the dataclass fields), so a default changes in one place. Torch-free, so
importing it costs nothing (``--help`` reads the loss defaults without importing torch).
"""

import inspect
from dataclasses import dataclass, fields

# conceptor aperture of the EAGC authors' scripts (tuned on DINO ViT-B/16 features)
APERTURE = 2.0
# lambda_AGA, the anchor-alignment weight of the authors' scripts
AGA_WEIGHT = 0.7
# beta, the EEP projection strength of the authors' scripts (3.0 for SimGCD on Cars/Aircraft)
EEP_WEIGHT = 0.5
# the labeled share of the old classes' samples (SimGCD train.py's --prop_train_labels)
LABELED_FRACTION = 0.5
# k, the SOC / principal-angle subspace dimension of the paper (docs/quantities.md)
SOC_K = 16
# neighbours per row of the k-NN overlap in every epoch record and the report's overlap figure
# (docs/records.md): fixed, so one key always means one k
KNN_K = 10


@dataclass(frozen=True)
class SimGCDLoss:
    """Weights and temperatures of the SimGCD objective; every default is SimGCD's.

    :class:`entangle.gcd.losses.LossConfig` is this class plus its checks; ``TrainConfig`` and
    ``AnalyzeConfig`` take these fields through :func:`with_simgcd_loss` and the ``train`` /
    ``analyze`` options read their defaults from here.

    Attributes:
        sup_weight: w, the weight of the supervised part (``1 - w`` for the unsupervised).
        memax_weight: lambda_me of the mean-entropy regulariser (SimGCD's default 2; its
            scripts use 4 for CIFAR-100, 2 for CUB, 1 elsewhere: ``gcd.script_values``).
        student_temperature: tau_s of the classifier's softmax (CE, distillation, memax);
            SimGCD's train.py ``student_out / 0.1`` and model.py ``DistillLoss(student_temp=0.1)``.
        warmup_teacher_temperature, teacher_temperature: the teacher's temperature warms
            linearly from the first to the second over ``warmup_teacher_epochs``.
        warmup_teacher_epochs: SimGCD's 30 (of its 200 epochs).
        supcon_temperature: SupCon's temperature (SimGCD's ``SupConLoss`` default).
        infonce_temperature: InfoNCE's temperature (SimGCD's ``info_nce_logits`` default).
    """

    sup_weight: float = 0.35
    memax_weight: float = 2.0
    student_temperature: float = 0.1
    warmup_teacher_temperature: float = 0.07
    teacher_temperature: float = 0.04
    warmup_teacher_epochs: int = 30
    supcon_temperature: float = 0.07
    infonce_temperature: float = 1.0


SIMGCD_LOSS = SimGCDLoss()


def with_simgcd_loss(*, after: str | None = None):
    """Class decorator, applied under ``@dataclass``: :class:`SimGCDLoss`'s fields become
    fields of the class, so ``TrainConfig`` and ``AnalyzeConfig`` declare none of them.

    They go in :class:`SimGCDLoss`'s order right after field ``after`` (at the end without
    it), so the fields' order, and with it run.json's key order, stays as it was. A loss field
    the class declares itself keeps its own type and default at its place in that order
    (``TrainConfig.warmup_teacher_epochs = None``: scaled to the run's epochs).

    Example:
        >>> @dataclass
        ... @with_simgcd_loss(after="lr")
        ... class Config:
        ...     lr: float = 0.1
        ...     seed: int = 0
        >>> [f.name for f in fields(Config)][:3]
        ['lr', 'sup_weight', 'memax_weight']
    """

    def insert(cls):
        own = inspect.get_annotations(cls)
        if after is not None and after not in own:
            raise TypeError(f"{cls.__name__} has no field {after!r} for the SimGCD loss fields")
        loss = {f.name: f for f in fields(SimGCDLoss)}
        annotations = {}

        def add_loss_fields():
            for name, f in loss.items():
                # the type as a string, like the annotations of a module with postponed ones
                annotations[name] = own.get(name, getattr(f.type, "__name__", f.type))
                if name not in own:
                    setattr(cls, name, f.default)

        for name, annotation in own.items():
            if name not in loss:
                annotations[name] = annotation
            if name == after:
                add_loss_fields()
        if after is None:
            add_loss_fields()
        cls.__annotations__ = annotations
        return cls

    return insert
