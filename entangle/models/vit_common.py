"""What every ViT backend shares: the config, the named configs, the position-embedding
resampler and the backbone protocol's forward.

The built-in ViT (vit.py), the timm adapter (vit_timm.py), VPT and the prompters import these
from here, so the adapter never imports the module that builds it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from entangle.errors import EntangleValueError


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a ViT; every field is recoverable from a state dict's shapes but
    ``num_heads`` (see :func:`infer_vit_config`)."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    in_chans: int = 3
    num_register_tokens: int = 0
    layer_scale: float | None = None  # init value of ls1/ls2; None = no layer scale
    mask_token: bool = False
    norm_eps: float = 1e-6

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


VIT_CONFIGS: dict[str, ViTConfig] = {
    # small enough for unit tests and CPU benchmarks
    "vit-tiny-test": ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4),
    "vit-s16": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vit-b16": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    # DINOv2 releases are trained at 518 px with 14 px patches (a 37 x 37 grid)
    "vit-s14-dinov2": ViTConfig(
        img_size=518, patch_size=14, embed_dim=384, num_heads=6, layer_scale=1e-5, mask_token=True
    ),
    "vit-b14-dinov2": ViTConfig(
        img_size=518, patch_size=14, embed_dim=768, num_heads=12, layer_scale=1e-5, mask_token=True
    ),
    "vit-b14-reg4-dinov2": ViTConfig(
        img_size=518,
        patch_size=14,
        embed_dim=768,
        num_heads=12,
        layer_scale=1e-5,
        mask_token=True,
        num_register_tokens=4,
    ),
}


def resample_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], *, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Bicubically resample the patch part of a position embedding to a new grid.

    Args:
        pos_embed: ``[1, P + g*g, D]``, ``P`` prefix (class) positions then a square ``g x g``
            patch grid in row-major order.
        grid: the new ``(rows, cols)`` patch grid.
        num_prefix_tokens: ``P``; prefix positions are kept unchanged.

    Returns:
        ``[1, P + rows*cols, D]`` in the input's dtype (interpolation runs in float32).
    """
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(patches.shape[1])
    if old * old != patches.shape[1]:
        raise EntangleValueError(
            f"pos_embed holds {patches.shape[1]} patch positions, not a square grid; "
            f"check num_prefix_tokens (got {num_prefix_tokens})"
        )
    if (old, old) == tuple(grid):
        return pos_embed
    d = patches.shape[-1]
    img = patches.float().reshape(1, old, old, d).permute(0, 3, 1, 2)
    # antialias only matters when shrinking; it keeps a downsampled grid from aliasing
    img = F.interpolate(img, size=tuple(grid), mode="bicubic", align_corners=False, antialias=True)
    patches = img.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


def backbone_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The protocol's forward, ``pool(blocks(embed(x)))``: images ``[n, C, H, W]`` to ``[n, D]``.

    One loop for every ViT behind the protocol (built-in and timm adapter), so the frozen-prefix
    split (``embed`` + the first blocks) means the same whichever backend runs.
    """
    h = backbone.embed(x)
    for block in backbone.blocks:
        h = block(h)
    return backbone.pool(h)
