"""Options shared by commands: the SimGCD objective's settings (train and analyze).

The defaults are SimGCD's (entangle.gcd.losses.LossConfig; a test keeps them equal); they
are written out here so that ``--help`` needs no torch import.
"""

from __future__ import annotations

from typing import Annotated

import typer

_LOSS = "SimGCD objective"

SupWeight = Annotated[
    float,
    typer.Option(
        help="w: weight of the supervised part (1 - w unsupervised).", rich_help_panel=_LOSS
    ),
]
MemaxWeight = Annotated[
    float, typer.Option(help="Weight of the mean-entropy regulariser.", rich_help_panel=_LOSS)
]
StudentTemperature = Annotated[
    float,
    typer.Option(
        help="Classifier softmax temperature (CE, distillation, memax).", rich_help_panel=_LOSS
    ),
]
WarmupTeacherTemperature = Annotated[
    float, typer.Option(help="Teacher temperature at epoch 0.", rich_help_panel=_LOSS)
]
TeacherTemperature = Annotated[
    float, typer.Option(help="Teacher temperature after the warm-up.", rich_help_panel=_LOSS)
]
SupconTemperature = Annotated[
    float, typer.Option(help="SupCon temperature.", rich_help_panel=_LOSS)
]
InfonceTemperature = Annotated[
    float, typer.Option(help="InfoNCE temperature (SimGCD: 1.0).", rich_help_panel=_LOSS)
]

LOSS_DEFAULTS = {
    "sup_weight": 0.35,
    "memax_weight": 2.0,
    "student_temperature": 0.1,
    "warmup_teacher_temperature": 0.07,
    "teacher_temperature": 0.04,
    "supcon_temperature": 0.07,
    "infonce_temperature": 1.0,
}
