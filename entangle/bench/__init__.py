"""Benchmarks: step-time ratios side by side (entangle bench), their models, t-SNE backends,
the GPU check, the sync audit.
"""
