"""Small stand-ins with the attribute names and forward of the DINO / DINOv2 torch.hub ViTs.

Written from the public layout of facebookresearch/dino ``vision_transformer.py``
(``prepare_tokens``, ``blocks``, ``norm``; ``forward`` returns ``norm(x)[:, 0]`` and never
applies ``head``) and facebookresearch/dinov2 ``vision_transformer.py``
(``prepare_tokens_with_masks``, ``register_tokens`` after the class token, ``forward`` returns
``head(norm(x)[:, 0])``). Blocks are entangle's ViT blocks; only the surrounding names matter.
"""

from __future__ import annotations

import torch
from torch import nn

from entangle.models.vit import Block, PatchEmbed, ViTConfig

CONFIG = ViTConfig(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=4)


class DinoStyleViT(nn.Module):
    """DINO v1 hub layout: ``prepare_tokens(x)``, ``blocks`` (ModuleList), ``norm``, ``head``."""

    def __init__(self, config: ViTConfig = CONFIG):
        super().__init__()
        d = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + config.grid**2, d))
        self.pos_drop = nn.Dropout(p=0.0)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Identity()

    def prepare_tokens(self, x):
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.pos_drop(tokens + self.pos_embed)

    def forward(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0]


class Dinov2StyleViT(DinoStyleViT):
    """DINOv2 hub layout with register tokens: ``prepare_tokens_with_masks(x, masks)``."""

    def __init__(self, config: ViTConfig = CONFIG, registers: int = 4):
        super().__init__(config)
        self.register_tokens = nn.Parameter(0.02 * torch.randn(1, registers, config.embed_dim))
        self.head = nn.Identity()

    def prepare_tokens_with_masks(self, x, masks=None):
        tokens = self.prepare_tokens(x)
        regs = self.register_tokens.expand(x.shape[0], -1, -1)
        return torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)

    def forward_features(self, x, masks=None):
        x = self.prepare_tokens_with_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return {"x_norm_clstoken": self.norm(x)[:, 0]}

    def forward(self, x, is_training=False):
        ret = self.forward_features(x)
        return ret if is_training else self.head(ret["x_norm_clstoken"])


def grad_from_block(model: nn.Module, first: int) -> nn.Module:
    """SimGCD's freezing (CVMI-Lab/SimGCD train.py): everything frozen, then parameters whose
    name contains ``block`` and whose second dotted part is ``>= grad_from_block`` train."""
    for name, p in model.named_parameters():
        p.requires_grad_("block" in name and int(name.split(".")[1]) >= first)
    return model
