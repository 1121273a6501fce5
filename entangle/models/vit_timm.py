"""timm's ``VisionTransformer`` behind the entangle backbone protocol (``backend="timm"``).

Only :func:`entangle.models.vit.build_vit` imports this module, and only when asked for the timm
backend; timm itself is imported inside :func:`build_timm`, so neither ``import entangle``
nor ``import entangle.models.vit`` needs timm.
"""

from __future__ import annotations

import torch
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.vit_common import ViTConfig, backbone_features, resample_pos_embed
from entangle.nn.class_token import reads_class_token_only

# timm architecture names with the same key layout as our configs (DINO v1 style only:
# timm stores DINOv2 registers as ``reg_token`` with a different pos_embed layout)
_TIMM_ARCHS = {"vit-s16": "vit_small_patch16_224", "vit-b16": "vit_base_patch16_224"}


class TimmViT(nn.Module):
    """timm's ``VisionTransformer`` (``num_classes=0``) behind the entangle backbone protocol.

    The timm modules and parameters are registered directly on this wrapper, so its
    ``state_dict`` keys are timm's (``cls_token``, ``blocks.N.*``, ...), identical to DINO's.
    """

    def __init__(self, vit: nn.Module, config: ViTConfig):
        super().__init__()
        if getattr(vit, "reg_token", None) is not None or getattr(vit, "no_embed_class", False):
            raise EntangleValueError(
                "timm ViTs with register tokens or without a class position are not supported "
                "by the adapter; use backend='builtin'"
            )
        self.config = config
        self.feature_dim = int(vit.embed_dim)
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.patch_embed = vit.patch_embed
        if hasattr(self.patch_embed, "strict_img_size"):
            self.patch_embed.strict_img_size = False  # other sizes: pos_embed is resampled
        self.pos_drop = getattr(vit, "pos_drop", nn.Identity())
        self.norm_pre = getattr(vit, "norm_pre", nn.Identity())
        self.blocks = nn.ModuleList(list(vit.blocks))
        self.norm = vit.norm

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, C, H, W]`` to tokens ``[n, 1 + N, D]``."""
        p = self.config.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        pos = resample_pos_embed(self.pos_embed, (x.shape[2] // p, x.shape[3] // p))
        return self.norm_pre(self.pos_drop(tokens + pos))

    @reads_class_token_only
    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm, then the CLS token: ``[n, T, D] -> [n, D]``."""
        return self.norm(h)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, C, H, W]`` to features ``z [n, D]``."""
        return backbone_features(self, x)


def build_timm(name: str, cfg: ViTConfig) -> TimmViT:
    try:
        import timm
    except ImportError as exc:
        raise EntangleValueError(
            "backend='timm' needs timm: pip install 'entangle-gcd[vit]', or use "
            "backend='builtin' (same key names and outputs, torch only)"
        ) from exc
    if name == "vit-tiny-test":
        from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

        vit = TimmVisionTransformer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            num_classes=0,
        )
    elif name in _TIMM_ARCHS:
        vit = timm.create_model(
            _TIMM_ARCHS[name], pretrained=False, num_classes=0, img_size=cfg.img_size
        )
    else:
        raise EntangleValueError(
            f"backend='timm' supports {sorted(_TIMM_ARCHS) + ['vit-tiny-test']}; {name!r} "
            "uses the DINOv2 layout, which only the builtin backend reproduces"
        )
    return TimmViT(vit, cfg)
