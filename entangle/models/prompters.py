"""SPTNet's visual prompters, applied to the input images before the backbone.

SPTNet (Visual-AI/SPTNet ``prompters.py``) learns an additive image-space prompt: a
``PatchPrompter`` (a full-size ``patch [1, 3, S, S]`` seen only through a frame of width 1
around every ViT patch) and, for ``prompt_type 'all'``, a ``PadPrompter`` before it (four
learned borders of width ``pad`` around the image). Parameter names and shapes match SPTNet's,
so its ``state_dict`` loads strictly; the masks are computed, not stored, as in SPTNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.vit import backbone_features


def _check_size(x: torch.Tensor, size: int, what: str) -> None:
    if x.shape[-2:] != (size, size):
        raise EntangleValueError(
            f"{what} adds a {size}x{size} prompt; got images of {tuple(x.shape[-2:])}: resize "
            f"the images to {size} px"
        )


class PatchPrompter(nn.Module):
    """``x + patch * mask``: mask = 1 on a frame of ``prompt_size`` px inside each patch."""

    def __init__(self, image_size: int, patch_size: int, prompt_size: int = 1):
        super().__init__()
        self.image_size, self.patch_size, self.prompt_size = image_size, patch_size, prompt_size
        self.patch = nn.Parameter(torch.randn(1, 3, image_size, image_size))
        inner = torch.zeros(1, 3, patch_size - 2 * prompt_size, patch_size - 2 * prompt_size)
        frame = F.pad(inner, (prompt_size,) * 4, value=1.0)
        grid = image_size // patch_size
        self.register_buffer("mask", frame.repeat(1, 1, grid, grid), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, 3, S, S]`` plus the prompt."""
        _check_size(x, self.image_size, "SPTNet's patch prompter")
        return x + self.patch * self.mask


class PadPrompter(nn.Module):
    """``x + border``: learned borders of ``pad`` px, zero inside."""

    def __init__(self, image_size: int, pad: int):
        super().__init__()
        self.image_size, self.pad = image_size, pad
        inner = image_size - 2 * pad
        self.pad_up = nn.Parameter(torch.randn(1, 3, pad, image_size))
        self.pad_down = nn.Parameter(torch.randn(1, 3, pad, image_size))
        self.pad_left = nn.Parameter(torch.randn(1, 3, inner, pad))
        self.pad_right = nn.Parameter(torch.randn(1, 3, inner, pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, 3, S, S]`` plus the border prompt."""
        _check_size(x, self.image_size, "SPTNet's pad prompter")
        inner = self.image_size - 2 * self.pad
        base = self.pad_up.new_zeros(1, 3, inner, inner)
        middle = torch.cat([self.pad_left, base, self.pad_right], dim=3)
        return x + torch.cat([self.pad_up, middle, self.pad_down], dim=2)


def sptnet_prompter(state: dict, patch_size: int) -> nn.Module:
    """The prompter a SPTNet state dict (its ``0.*`` entries, prefix removed) describes.

    ``{"patch"}``: ``prompt_type 'patch'``; ``{"0.pad_up", ..., "1.patch"}``: ``'all'``
    (``Sequential(PadPrompter, PatchPrompter)``). SPTNet's patch prompter frame is 1 px.
    """
    if "patch" in state:
        return PatchPrompter(state["patch"].shape[-1], patch_size)
    if "0.pad_up" in state and "1.patch" in state:
        size = state["1.patch"].shape[-1]
        return nn.Sequential(
            PadPrompter(size, state["0.pad_up"].shape[2]), PatchPrompter(size, patch_size)
        )
    raise EntangleValueError(
        f"not a SPTNet prompter: expected 'patch' or '0.pad_up'/'1.patch', got {sorted(state)[:6]}"
    )


class PromptedBackbone(nn.Module):
    """A backbone that sees ``prompter(x)``: SPTNet's ``backbone(prompter(images))``.

    Follows the backbone protocol (``embed``, ``blocks``, ``pool``, ``feature_dim``,
    ``config``), the prompter being part of ``embed``, so the probed blocks are the ViT's.
    """

    def __init__(self, prompter: nn.Module, backbone: nn.Module):
        super().__init__()
        self.prompter = prompter
        self.backbone = backbone
        self.feature_dim = backbone.feature_dim

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.blocks

    @property
    def config(self):
        return getattr(self.backbone, "config", None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, 3, S, S]`` to tokens, through the prompter first."""
        return self.backbone.embed(self.prompter(x))

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return self.backbone.pool(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[n, 3, S, S]`` to features ``[n, D]``."""
        return backbone_features(self, x)
