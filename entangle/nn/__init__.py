"""Helpers on the user's torch modules: train/eval modes, DDP reductions, backbone split points
and the shared frozen prefix.
"""
