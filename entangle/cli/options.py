"""Options shared by commands: the data split, the device, the SimGCD objective's settings
(train and analyze).

The defaults are SimGCD's, read from their one home :class:`entangle.defaults.SimGCDLoss`
(torch-free, so ``--help`` needs no torch import; ``LossConfig`` reads the same class).
"""

from __future__ import annotations

from typing import Annotated

import typer

from entangle.defaults import SIMGCD_LOSS

_LOSS = "SimGCD objective"

OldClasses = Annotated[
    str | None, typer.Option(help="Known classes: a count, a comma list, or a file.")
]
LabeledFraction = Annotated[float, typer.Option(help="Labeled share of old classes.")]
Device = Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda:0'.")]

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

# the defaults of the options above (``LOSS.sup_weight`` ...)
LOSS = SIMGCD_LOSS
