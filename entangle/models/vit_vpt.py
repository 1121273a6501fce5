"""PromptCAL's visual-prompt ViT (VPT-Deep, sheng-eatamath/PromptCAL
``models/vpt_vision_transformer.py``), with its key names.

On top of the DINO ViT (:mod:`entangle.models.vit`) it has ``prompt_tokens [L, P, D]`` and a
``pos_embed [1, 1 + P + N, D]`` holding positions for the class token, the ``P`` prompts
(zero in PromptCAL) and the ``N`` patches. The tokens are ``[cls, prompts[0], patches]``;
after block ``i < L - 1`` the prompt slots are replaced by ``prompt_tokens[i + 1]`` (deep
prompts; PromptCAL's scripts keep ``n_shallow_prompts = 0``, which the state dict cannot
record). Backbone protocol as the plain ViT; the prompt swap lives in the blocks, so the
protocol's loop ``h = block(h)`` runs the same model.
"""

from __future__ import annotations

import torch
from torch import nn

from entangle.models.vit import Block, VisionTransformer, ViTConfig, resample_pos_embed


class PromptedBlock(Block):
    """A ViT block that, after itself, puts the next layer's prompts into the prompt slots."""

    def __init__(self, cfg: ViTConfig, index: int, owner: VPTVisionTransformer):
        super().__init__(cfg)
        self.index = index
        # a plain reference, not a submodule: the owner holds this block
        object.__setattr__(self, "_owner", owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        owner = self._owner
        prompts = owner.prompt_tokens
        if self.index < prompts.shape[0] - 1:
            p = owner.num_prompts
            nxt = prompts[self.index + 1].to(x.dtype).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], nxt, x[:, 1 + p :]], dim=1)
        return x


class VPTVisionTransformer(VisionTransformer):
    """The DINO ViT with PromptCAL's deep visual prompts (``num_prompts`` per layer)."""

    def __init__(self, config: ViTConfig, num_prompts: int, prompt_layers: int):
        super().__init__(config)
        d = config.embed_dim
        self.num_prompts = num_prompts
        self.prompt_tokens = nn.Parameter(torch.zeros(prompt_layers, num_prompts, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_prompts + config.grid**2, d))
        self.blocks = nn.ModuleList(PromptedBlock(config, i, self) for i in range(config.depth))

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.num_prompts

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, C, H, W]`` to ``[n, 1 + P + N, D]``: class, first-layer prompts, patches."""
        p = self.config.patch_size
        tokens = self.patch_embed(x)
        n = tokens.shape[0]
        prefix = self.pos_embed[:, : 1 + self.num_prompts]
        patch_pos = torch.cat([self.pos_embed[:, :1], self.pos_embed[:, 1 + self.num_prompts :]], 1)
        patch_pos = resample_pos_embed(patch_pos, (x.shape[2] // p, x.shape[3] // p))[:, 1:]
        prompts = self.prompt_tokens[0].expand(n, -1, -1)
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), prompts, tokens], dim=1)
        return tokens + torch.cat([prefix, patch_pos], dim=1)
