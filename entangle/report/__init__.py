"""Reports: self-contained HTML + PNG figures of one or more entangle runs.

Plotting (matplotlib, seaborn) and t-SNE (openTSNE, scikit-learn) load inside the functions
that need them, and the package's own names load on first use, so that a t-SNE worker
process (``entangle.report.tsne_worker``) starts without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"build_report": "entangle.report.build", "tsne_embed": "entangle.report.tsne"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'entangle.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
