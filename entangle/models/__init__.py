"""Backbones and heads: the builtin ViT (DINO/timm key names), timm, CLIP and VPT ViTs,
prompters, GCD heads.

Importing the package registers the built-in backbones (``digits-mlp`` in backbones.py, the
``vit-*`` family in vit.py) with ``entangle.models.registry``, as timm's ``models/__init__.py``
imports its model modules; neither imports timm or torchvision.
"""

from entangle.models import backbones, vit  # noqa: F401  (registers the built-in backbones)
