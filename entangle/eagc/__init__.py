"""EAGC: Anchor-based Gradient Alignment (AGA) + Energy-aware Elastic Projection (EEP).

Applied to the gradient of the hooked feature tensor z, per row, in one backward
(docs/quantities.md, EAGC)::

    g_i <- g_i - w_i C g_i + c m_i (z_i - z_i^ref)

Every ``coordinate`` call computes its own weights and AGA term in the forward pass and keeps
them in the autograd graph, so gradient accumulation, two forwards per step and DDP are exact:
nothing is read from shared state at backward time.

The package: ``coordinator`` (:class:`EAGC`), ``state`` (what one call decided, the autograd
function), ``checks`` (inputs and loss scaling). Every name is importable from here.
"""

from entangle.eagc.checks import check_scaling
from entangle.eagc.coordinator import EAGC
from entangle.eagc.state import CoordinationState, loss_scale
from entangle.metrics.calibration import APERTURE_CRITERIA, resolve_aperture
from entangle.nn.features import reference_features

# aperture resolution and reference features live with their kind (metrics/calibration.py,
# nn/features.py); kept importable from here, where EAGC's users look for them
__all__ = [
    "APERTURE_CRITERIA",
    "EAGC",
    "CoordinationState",
    "check_scaling",
    "loss_scale",
    "reference_features",
    "resolve_aperture",
]
