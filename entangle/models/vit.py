"""A Vision Transformer whose ``state_dict`` matches DINO / timm / DINOv2 key names exactly.

The built-in model needs only torch, so results never depend on whether timm is installed.
Its parameter names and shapes are those of the DINO ViT (which timm's ``VisionTransformer``
with ``num_classes=0`` shares) and, for the DINOv2 configs, those of the official DINOv2
release (``register_tokens``, ``mask_token``, ``blocks.N.ls1.gamma`` / ``ls2.gamma``)::

    cls_token                       [1, 1, D]
    pos_embed                       [1, 1 + N, D]   (N patches; registers get no position)
    register_tokens                 [1, R, D]       (DINOv2 with registers only)
    mask_token                      [1, D]          (DINOv2 only; unused at inference)
    patch_embed.proj.weight / bias  [D, 3, p, p] / [D]
    blocks.i.norm1.weight / bias    [D]
    blocks.i.attn.qkv.weight / bias [3D, D] / [3D]
    blocks.i.attn.proj.weight/bias  [D, D] / [D]
    blocks.i.ls1.gamma              [D]             (DINOv2 layer scale only)
    blocks.i.norm2.weight / bias    [D]
    blocks.i.mlp.fc1.weight / bias  [4D, D] / [4D]
    blocks.i.mlp.fc2.weight / bias  [D, 4D] / [D]
    blocks.i.ls2.gamma              [D]             (DINOv2 layer scale only)
    norm.weight / bias              [D]

Backbone protocol (shared with the small digits backbone): ``embed(x) -> tokens [n, T, D]``,
``blocks`` (an ``nn.ModuleList``), ``pool(h) -> z [n, D]`` and ``forward(x) =
pool(blocks(embed(x)))``, plus ``feature_dim``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.registry import register_backbone
from entangle.models.vit_common import (
    VIT_CONFIGS,
    ViTConfig,
    backbone_features,
    resample_pos_embed,
)
from entangle.nn.class_token import class_token_attention, reads_class_token_only

__all__ = [
    "VIT_CONFIGS",
    "Block",
    "PatchEmbed",
    "ViTConfig",
    "VisionTransformer",
    "backbone_features",
    "build_vit",
    "infer_vit_config",
    "resample_pos_embed",
]


# embed_dim -> heads of the published ViTs; anything else falls back to 64-d heads
_HEADS_BY_DIM = {64: 4, 192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1536: 24}


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: ``[n, C, H, W] -> [n, (H/p)(W/p), D]``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (DINO/timm layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise EntangleValueError(
                f"embed_dim {dim} is not divisible by num_heads {num_heads}; pick heads that "
                "divide the width (e.g. 6 for 384, 12 for 768)"
            )
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, T, D] -> [n, T, D]``."""
        n, t, d = x.shape
        # qkv output is laid out as (3, heads, head_dim) along the last axis, as in DINO
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [n, heads, T, head_dim]
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """``fc1 -> GELU (exact) -> fc2``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale (DINOv2); the parameter is named ``gamma`` there and in timm."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``+ ls2(mlp(norm2(x)))``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(d, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = LayerScale(d, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def forward_class_token(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, :1]`` computed on the class token's row: ``[n, T, D] -> [n, 1, D]``.

        k and v on every row, q and everything after the attention on row 0; equal to
        ``forward`` up to float rounding (:mod:`entangle.nn.class_token`).
        """
        a = class_token_attention(self.attn.qkv, self.norm1(x), self.attn.num_heads)
        h = x[:, :1] + self.ls1(self.attn.proj(a))
        return h + self.ls2(self.mlp(self.norm2(h)))


class VisionTransformer(nn.Module):
    """ViT backbone returning the final-norm CLS token ``z [n, D]`` (the feature EAGC hooks).

    Example:
        >>> vit = VisionTransformer(VIT_CONFIGS["vit-tiny-test"])
        >>> vit(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 64])
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.feature_dim = d
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, d))
        if config.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, d))
        else:
            self.register_tokens = None
        # kept only so DINOv2 files load strictly; masked-image training is not supported
        self.mask_token = nn.Parameter(torch.zeros(1, d)) if config.mask_token else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self._init_weights()

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: the class token and any registers."""
        return 1 + self.config.num_register_tokens

    def _init_weights(self) -> None:
        # the usual ViT recipe: truncated-normal weights, zero biases, tiny class token
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, C, H, W]`` to tokens ``[n, 1 + R + N, D]``: CLS, registers, patches.

        Position embeddings are added to CLS and patches (resampled when the input grid
        differs from ``config.img_size``); registers carry none, as in DINOv2.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise EntangleValueError(
                f"expected images [n, {self.config.in_chans}, H, W], got {tuple(x.shape)}"
            )
        p = self.config.patch_size
        if x.shape[2] % p or x.shape[3] % p:
            raise EntangleValueError(
                f"image size {tuple(x.shape[2:])} is not a multiple of the patch size {p}; "
                "resize or crop the images"
            )
        tokens = self.patch_embed(x)
        n = tokens.shape[0]
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1)
        pos = resample_pos_embed(self.pos_embed, (x.shape[2] // p, x.shape[3] // p))
        tokens = tokens + pos
        if self.register_tokens is not None:
            regs = self.register_tokens.expand(n, -1, -1)
            tokens = torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)
        return tokens

    @reads_class_token_only
    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm, then the CLS token: ``[n, T, D] -> [n, D]``."""
        return self.norm(h)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, C, H, W]`` to features ``z [n, D]``."""
        return backbone_features(self, x)


def infer_vit_config(
    state: Mapping[str, torch.Tensor], *, num_heads: int | None = None
) -> ViTConfig:
    """Read a ViT's architecture off its state dict (DINO / DINOv2 key names, no prefix).

    Everything comes from tensor shapes except the head count, which shapes do not reveal:
    it defaults to the published value for the width (6 for 384, 12 for 768, ...), else
    64-d heads; pass ``num_heads`` to override.
    """
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise EntangleValueError(
            f"not a ViT state dict: missing {missing}; expected DINO/timm key names "
            "(cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*)"
        )
    proj = state["patch_embed.proj.weight"]
    d, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    n_pos = state["pos_embed"].shape[1] - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise EntangleValueError(
            f"pos_embed has {n_pos + 1} positions: expected 1 class position plus a square "
            "patch grid (a timm layout without class position is not supported)"
        )
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    if depth == 0:
        raise EntangleValueError("ViT state dict has no blocks.N.* entries")
    regs = state.get("register_tokens")
    heads = num_heads or _HEADS_BY_DIM.get(d, max(1, d // 64))
    return ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=d,
        depth=depth,
        num_heads=heads,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / d,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        in_chans=in_chans,
        num_register_tokens=0 if regs is None else regs.shape[1],
        layer_scale=1e-5 if "blocks.0.ls1.gamma" in state else None,
        mask_token="mask_token" in state,
    )


@register_backbone("vit-*", members=VIT_CONFIGS)
def build_vit(name: str, *, img_size: int | None = None, backend: str = "auto") -> nn.Module:
    """Build a ViT backbone that follows the entangle backbone protocol.

    Args:
        name: one of :data:`VIT_CONFIGS` (``vit-tiny-test``, ``vit-s16``, ``vit-b16``,
            ``vit-s14-dinov2``, ``vit-b14-dinov2``, ``vit-b14-reg4-dinov2``).
        img_size: build for this input size (pretrained weights loaded with
            ``entangle.checkpoints.load_pretrained_vit`` have their position embedding
            resampled bicubically). Inputs of other sizes still work: the embedding is
            resampled on the fly.
        backend: ``"builtin"`` (this module, torch only), ``"timm"`` (timm's
            ``VisionTransformer`` wrapped to the same protocol; DINO v1 layouts only) or
            ``"auto"``, which means builtin: results must not change with what is installed.

    Returns:
        an ``nn.Module`` with ``embed``, ``blocks``, ``pool``, ``feature_dim``; ``forward``
        maps ``[n, 3, H, W]`` to ``[n, D]``.
    """
    if name not in VIT_CONFIGS:
        raise EntangleValueError(f"unknown ViT {name!r}; choose one of {sorted(VIT_CONFIGS)}")
    if backend not in ("auto", "builtin", "timm"):
        raise EntangleValueError(f"backend must be 'auto', 'builtin' or 'timm', got {backend!r}")
    cfg = VIT_CONFIGS[name]
    if img_size is not None:
        if img_size <= 0 or img_size % cfg.patch_size:
            raise EntangleValueError(
                f"img_size must be a positive multiple of the patch size {cfg.patch_size}, "
                f"got {img_size}"
            )
        cfg = replace(cfg, img_size=img_size)
    if backend == "timm":
        # lazy: the adapter imports timm; a builtin ViT never needs it
        from entangle.models.vit_timm import build_timm

        model = build_timm(name, cfg)
    else:
        model = VisionTransformer(cfg)
    return model
