"""``entangle analyze``: diagnose saved GCD checkpoints (features, overlap, energy, gradients).

The names load on first use: the ``analyze`` command's options import only
:mod:`entangle.analysis.config`, not the analysis and its checkpoint loaders.
"""

from entangle.lazy_exports import lazy_exports

_EXPORTS = {
    "AnalysisResult": "entangle.analysis.run",
    "AnalyzeConfig": "entangle.analysis.config",
    "CheckpointAnalysis": "entangle.analysis.run",
    "FeatureData": "entangle.analysis.inputs",
    "analyze": "entangle.analysis.run",
    "load_feature_file": "entangle.analysis.inputs",
    "load_inputs": "entangle.analysis.inputs",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
