"""The only implementation of each entangle quantity; see docs/quantities.md for the formulas."""

from entangle.metrics.clustering import (
    ACCURACY_PROTOCOLS,
    accuracy_protocols,
    cluster_accuracies,
    cluster_accuracy,
    hungarian_mapping,
)
from entangle.metrics.energy import conceptor, conceptor_spectrum, energy_ratio, free_energy
from entangle.metrics.gradients import gdc, gradient_conflict, rowwise_cosine
from entangle.metrics.overlap import knn_overlap
from entangle.metrics.subspace import principal_angles, soc

__all__ = [
    "ACCURACY_PROTOCOLS",
    "accuracy_protocols",
    "cluster_accuracies",
    "cluster_accuracy",
    "conceptor",
    "conceptor_spectrum",
    "energy_ratio",
    "free_energy",
    "gdc",
    "gradient_conflict",
    "hungarian_mapping",
    "knn_overlap",
    "principal_angles",
    "rowwise_cosine",
    "soc",
]
