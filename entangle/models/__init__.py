"""Backbones and heads: the builtin ViT (DINO/timm key names), timm, CLIP and VPT ViTs,
prompters, GCD heads.
"""
