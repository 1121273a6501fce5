"""CLIP's image encoder (ViT-B/16 visual of openai/CLIP ``clip/model.py``), with CLIP's key names.

It differs from the DINO ViT in the places its state dict shows: a bias-free ``conv1`` patch
embedding, a ``class_embedding`` vector and a ``positional_embedding`` without batch axis, a
LayerNorm ``ln_pre`` before the blocks, blocks with ``nn.MultiheadAttention``
(``attn.in_proj_weight``) and a QuickGELU MLP (``mlp.c_fc`` / ``mlp.c_proj``), ``ln_post`` on
the class token and a ``proj`` matrix to the joint embedding::

    conv1.weight                          [W, 3, p, p]
    class_embedding                       [W]
    positional_embedding                  [1 + N, W]
    ln_pre.weight / bias                  [W]
    transformer.resblocks.i.attn.in_proj_weight / bias   [3W, W] / [3W]
    transformer.resblocks.i.attn.out_proj.weight / bias  [W, W] / [W]
    transformer.resblocks.i.ln_1.* / ln_2.*              [W]
    transformer.resblocks.i.mlp.c_fc.weight / bias       [4W, W] / [4W]
    transformer.resblocks.i.mlp.c_proj.weight / bias     [W, 4W] / [W]
    ln_post.weight / bias                 [W]
    proj                                  [W, E]

The feature is ``ln_post(cls)`` (``use_proj=False``, what GET trains on) or its projection.
Backbone protocol as :mod:`entangle.models.vit`: ``embed``, ``blocks``, ``pool``, ``feature_dim``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.vit import backbone_features


@dataclass(frozen=True)
class CLIPVisionConfig:
    """Sizes of a CLIP image encoder (ViT-B/16: 224 px, patch 16, width 768, 12 layers, 12
    heads, embedding 512)."""

    img_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    output_dim: int = 512
    use_proj: bool = False

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-LN block on batch-first tokens ``[n, T, W]`` (same parameters as CLIP's)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))


class CLIPVisionTransformer(nn.Module):
    """CLIP's visual encoder: images ``[n, 3, S, S]`` to ``ln_post(cls) [n, W]`` (or ``@ proj``)."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.feature_dim = config.output_dim if config.use_proj else w
        self.conv1 = nn.Conv2d(3, w, config.patch_size, stride=config.patch_size, bias=False)
        scale = w**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid**2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _Transformer(w, config.layers, config.heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, config.output_dim))

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images to tokens ``[n, 1 + N, W]``: class token, patches, positions, ``ln_pre``."""
        size = self.config.img_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise EntangleValueError(
                f"CLIP's image encoder takes [n, 3, {size}, {size}] images, got {tuple(x.shape)}"
            )
        tokens = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positional_embedding.to(tokens.dtype)
        return self.ln_pre(tokens)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        z = self.ln_post(h[:, 0])
        return z @ self.proj if self.config.use_proj else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, 3, S, S]`` to features ``[n, feature_dim]``."""
        return backbone_features(self, x)


def is_clip_visual_state(state: Mapping) -> bool:
    return all(k in state for k in ("conv1.weight", "class_embedding", "positional_embedding"))


def infer_clip_vision_config(state: Mapping[str, torch.Tensor]) -> CLIPVisionConfig:
    """Sizes of a CLIP visual state dict (heads = width / 64, as every CLIP ViT has)."""
    if not is_clip_visual_state(state):
        raise EntangleValueError("not a CLIP visual state dict (conv1, class_embedding missing)")
    w, _, p, _ = state["conv1.weight"].shape
    n = state["positional_embedding"].shape[0] - 1
    grid = math.isqrt(n)
    layers = 1 + max(
        (int(k.split(".")[2]) for k in state if k.startswith("transformer.resblocks.")), default=-1
    )
    return CLIPVisionConfig(
        img_size=grid * p,
        patch_size=p,
        width=w,
        layers=layers,
        heads=max(1, w // 64),
        output_dim=state["proj"].shape[1] if "proj" in state else w,
    )
