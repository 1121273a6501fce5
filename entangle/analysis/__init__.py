"""``entangle analyze``: diagnose saved GCD checkpoints (features, overlap, energy, gradients).

The names load on first use: the ``analyze`` command's options import only
:mod:`entangle.analysis.config`, not the analysis and its checkpoint loaders.
"""

import importlib

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


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'entangle.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
