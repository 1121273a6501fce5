"""entangle: diagnose gradient entanglement in Generalized Category Discovery and apply EAGC.

Importing entangle needs only torch and numpy; plotting, t-SNE and timm load inside the
functions that use them.
"""

from __future__ import annotations

from entangle.lazy_exports import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it; loaded on first access so `import entangle` stays light
_EXPORTS = {
    "Probe": "entangle.probing.probe",
    "ProbeSet": "entangle.probing.probeset",
    "last_block": "entangle.probing.params",
    "EAGC": "entangle.eagc",
    "SharedPrefix": "entangle.nn.prefix",
    "train_reference": "entangle.gcd.reference",
    "RunWriter": "entangle.runs.directory",
    "RunReader": "entangle.runs.directory",
    "EntangleError": "entangle.errors",
    "EntangleWarning": "entangle.errors",
    "metrics": "entangle.metrics",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
