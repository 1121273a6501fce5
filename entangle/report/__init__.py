"""Reports: self-contained HTML + PNG figures of one or more entangle runs.

Plotting (matplotlib, seaborn) and t-SNE (openTSNE, scikit-learn) load inside the functions
that need them, and the package's own names load on first use, so that a t-SNE worker
process (``entangle.report.tsne_worker``) starts without importing torch.
"""

from __future__ import annotations

from entangle.lazy_exports import lazy_exports

_EXPORTS = {"build_report": "entangle.report.build", "tsne_embed": "entangle.report.tsne"}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
