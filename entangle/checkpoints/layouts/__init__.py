"""One module per codebase's checkpoint layout; importing this package registers them all.

Each layout's ``order`` fixes the detection order: specific layouts first, the plain ViT
state dict (which many other layouts also contain) last.
"""

from entangle.checkpoints.layouts import (  # noqa: F401
    cms,
    dino,
    dinov2,
    eagc,
    entangle,
    get,
    simgcd,
    sptnet,
    vit,
)
