"""Small backbones for the embedded data, and the block protocol every entangle backbone follows.

The protocol (shared with the ViT in ``entangle.models.vit``):

- ``embed(x) -> h``: stem / patch embedding;
- ``blocks``: an ``nn.ModuleList`` named ``blocks.0``, ``blocks.1``, ...; the "last trainable
  block" the probe watches is ``blocks[-1]``;
- ``pool(h) -> z`` ``[n, D]``: final norm and pooling;
- ``forward(x) = pool(blocks(embed(x)))``, ``z`` being the feature tensor EAGC hooks;
- ``feature_dim = D``.

Because the split point between ``embed + blocks[:i]`` and ``blocks[i:] + pool`` means the same
thing for every backbone, frozen-prefix sharing and cached probe sets work on any of them.

``build_backbone(name, **kw)`` (re-exported from ``entangle.models.registry``) builds any
registered backbone by name: ``"digits-mlp"`` (``ResidualMLP``, registered here) or a
``"vit-..."`` name (``entangle.models.vit.build_vit``); see docs/architecture.md.
"""

from __future__ import annotations

import torch
from torch import nn

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.registry import build_backbone, register_backbone

__all__ = ["ResidualMLP", "ResidualMLPBlock", "build_backbone", "freeze_prefix"]


class ResidualMLPBlock(nn.Module):
    """Pre-norm residual MLP block: ``h + W2 gelu(W1 LN(h))``, ``[n, D] -> [n, D]``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(nn.functional.gelu(self.fc1(self.norm(h))))


@register_backbone("digits-mlp")
class ResidualMLP(nn.Module):
    """A small pre-norm residual MLP on flattened inputs, following the block protocol.

    The 8x8 digits are 64 numbers, small enough that an MLP over the pixel vector trains in a
    fraction of a second per epoch on a CPU, while its pre-norm residual blocks and final
    LayerNorm mirror a ViT's so "last block" means the same thing.

    Args:
        in_dim: input features after flattening (64 for 8x8 digits, ``dim`` of synthetic data).
        dim: feature dimension D.
        depth: number of blocks.
        hidden_ratio: block hidden width / D.

    Shapes:
        ``x`` ``[n, ...]`` with ``in_dim`` numbers per row -> ``embed`` ``[n, D]`` ->
        ``blocks`` ``[n, D]`` -> ``pool`` ``[n, D]``.
    """

    def __init__(self, in_dim: int = 64, dim: int = 128, depth: int = 4, hidden_ratio: int = 2):
        super().__init__()
        if min(in_dim, dim, depth, hidden_ratio) < 1:
            raise EntangleValueError(
                f"ResidualMLP: in_dim, dim, depth and hidden_ratio must be >= 1, got "
                f"{in_dim}, {dim}, {depth}, {hidden_ratio}"
            )
        self.in_dim = in_dim
        self.feature_dim = dim
        self.stem = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(ResidualMLPBlock(dim, hidden_ratio * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, ...]`` -> ``[n, D]``: flatten and project."""
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.in_dim:
            raise EntangleValueError(
                f"ResidualMLP expects {self.in_dim} input numbers per sample, got "
                f"{flat.shape[1]} (input shape {tuple(x.shape)}); build it with in_dim="
                f"{flat.shape[1]}"
            )
        return self.stem(flat)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, D]`` -> ``[n, D]``: the final LayerNorm (vector form needs no pooling)."""
        return self.norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, ...]`` -> features ``z`` ``[n, D]``."""
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.pool(h)


def freeze_prefix(backbone: nn.Module, trainable_blocks: int = 1) -> int:
    """Freeze everything but the last ``trainable_blocks`` blocks (SimGCD's setting).

    Sets ``requires_grad`` on every parameter of the backbone: True inside ``blocks[i:]``,
    False elsewhere. Like SimGCD, which unfreezes only parameters inside the trainable blocks,
    this freezes the stem / patch embedding and also the final norm in ``pool``.

    Args:
        backbone: a module with ``blocks`` (``nn.ModuleList``).
        trainable_blocks: how many trailing blocks train, 0..len(blocks).

    Returns:
        ``i``, the index of the first trainable block (``len(blocks)`` when none trains):
        ``embed + blocks[:i]`` is the frozen prefix.
    """
    blocks = getattr(backbone, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise EntangleTypeError(
            f"freeze_prefix needs a backbone with an nn.ModuleList 'blocks', got "
            f"{type(backbone).__name__}"
        )
    if not 0 <= trainable_blocks <= len(blocks):
        raise EntangleValueError(
            f"trainable_blocks must be between 0 and {len(blocks)} (the number of blocks), "
            f"got {trainable_blocks}"
        )
    first = len(blocks) - trainable_blocks
    trainable = {id(p) for block in blocks[first:] for p in block.parameters()}
    for p in backbone.parameters():
        p.requires_grad_(id(p) in trainable)
    return first
