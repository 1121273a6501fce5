"""``entangle analyze``: diagnose saved GCD checkpoints (features, overlap, energy, gradients)."""

from entangle.analysis.inputs import FeatureData, load_feature_file, load_inputs
from entangle.analysis.run import AnalysisResult, AnalyzeConfig, CheckpointAnalysis, analyze

__all__ = [
    "AnalysisResult",
    "AnalyzeConfig",
    "CheckpointAnalysis",
    "FeatureData",
    "analyze",
    "load_feature_file",
    "load_inputs",
]
