"""How to run a backbone in two parts: stem + leading blocks, then the rest + pooling.

Frozen-prefix sharing (:class:`~entangle.nn.prefix.SharedPrefix`) and cached probe sets
(:class:`~entangle.probing.probeset.ProbeSet`) cut a backbone between ``blocks[i - 1]`` and
``blocks[i]``. Each layout GCD code uses gets one small recogniser here that names its stem,
its block list and its pooling, so that ``pool(blocks[i:](blocks[:i](embed(x))))`` is, op for
op, what the module's own ``forward(x)`` computes:

- entangle's protocol: ``embed(x)``, ``blocks``, ``pool(h)`` (the built-in ViT, the timm
  adapter, the digits MLP, or a user's module written to it);
- timm ``VisionTransformer``: ``patch_embed`` -> ``_pos_embed`` (class / register tokens,
  position embedding, ``pos_drop``) -> ``patch_drop`` -> ``norm_pre`` | ``blocks`` |
  ``norm`` -> ``forward_head`` (pooling, ``fc_norm``, ``head``), as ``forward_features`` +
  ``forward_head`` run it;
- DINOv2 torch.hub ViT: ``prepare_tokens_with_masks(x)`` | ``blocks`` | ``head(norm(h)[:, 0])``;
- DINO (v1) torch.hub ViT: ``prepare_tokens(x)`` | ``blocks`` | ``norm(h)[:, 0]``.

Anything else raises one :class:`~entangle.errors.EntangleTypeError` naming what was looked
for and the exact fallback of the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from entangle.errors import EntangleTypeError


@dataclass(frozen=True)
class BackboneSplit:
    """A backbone seen as ``pool(blocks(embed(x)))``.

    Attributes:
        layout: which recogniser matched (``"entangle"``, ``"timm"``, ``"dinov2"``, ``"dino"``).
        embed: ``x -> h`` the stem (tokens ``[n, T, D]`` for ViTs).
        blocks: the block container (``nn.ModuleList`` or ``nn.Sequential``).
        pool: ``h -> z [n, D]``, everything after the last block.
        pool_modules: the modules ``pool`` uses; their parameters belong to the suffix.
        class_token_pool: ``pool`` reads only row 0 of ``h`` (the class token) through a
            per-token norm, so ``pool(h[:, :1]) == pool(h)`` and the last block may run on
            that row alone (:mod:`entangle.nn.class_token`).
    """

    layout: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    blocks: nn.Module
    pool: Callable[[torch.Tensor], torch.Tensor]
    pool_modules: tuple[nn.Module, ...]
    class_token_pool: bool = False


def _modules(backbone: nn.Module, *names: str) -> tuple[nn.Module, ...]:
    found = (getattr(backbone, name, None) for name in names)
    return tuple(m for m in found if isinstance(m, nn.Module))


def _per_token(norm) -> bool:
    """Whether ``norm`` acts on each token alone (so it commutes with taking row 0)."""
    return isinstance(norm, nn.LayerNorm | nn.Identity)


def _is_blocks(value) -> bool:
    return isinstance(value, nn.ModuleList | nn.Sequential)


def _entangle(m: nn.Module) -> BackboneSplit | None:
    if not (callable(getattr(m, "embed", None)) and callable(getattr(m, "pool", None))):
        return None
    if not _is_blocks(getattr(m, "blocks", None)):
        return None
    # the protocol's final norm lives beside the blocks under the name `norm`; a pool marked
    # with reads_class_token_only declares it reads row 0 alone
    token = bool(getattr(m.pool, "reads_class_token_only", False))
    return BackboneSplit("entangle", m.embed, m.blocks, m.pool, _modules(m, "norm"), token)


def _timm(m: nn.Module) -> BackboneSplit | None:
    needed = ("patch_embed", "_pos_embed", "norm", "forward_head")
    if not all(hasattr(m, a) for a in needed) or not _is_blocks(getattr(m, "blocks", None)):
        return None
    identity = nn.Identity()
    patch_drop = getattr(m, "patch_drop", identity)
    norm_pre = getattr(m, "norm_pre", identity)

    def embed(x):
        return norm_pre(patch_drop(m._pos_embed(m.patch_embed(x))))

    def pool(h):
        return m.forward_head(m.norm(h))

    heads = _modules(m, "norm", "fc_norm", "attn_pool", "head_drop", "head")
    # timm's own pooling of the class token: global_pool='token', no attention pool
    token = (
        type(m).__module__.startswith("timm.")
        and getattr(m, "global_pool", None) == "token"
        and getattr(m, "attn_pool", None) is None
        and _per_token(m.norm)
    )
    return BackboneSplit("timm", embed, m.blocks, pool, heads, token)


def _dinov2(m: nn.Module) -> BackboneSplit | None:
    if not (hasattr(m, "prepare_tokens_with_masks") and hasattr(m, "norm")):
        return None
    if not _is_blocks(getattr(m, "blocks", None)):
        return None
    head = m.head if isinstance(getattr(m, "head", None), nn.Module) else nn.Identity()

    def pool(h):
        return head(m.norm(h)[:, 0])

    return BackboneSplit(
        "dinov2",
        lambda x: m.prepare_tokens_with_masks(x),
        m.blocks,
        pool,
        _modules(m, "norm", "head"),
        _per_token(m.norm),
    )


def _dino(m: nn.Module) -> BackboneSplit | None:
    if not (hasattr(m, "prepare_tokens") and hasattr(m, "norm")):
        return None
    if not _is_blocks(getattr(m, "blocks", None)):
        return None

    def pool(h):
        # DINO's forward returns the normed class token; its `head` is not applied
        return m.norm(h)[:, 0]

    norm = _modules(m, "norm")
    return BackboneSplit("dino", m.prepare_tokens, m.blocks, pool, norm, _per_token(m.norm))


# tried in order; the explicit protocol first, so a user's module written to it always wins
RECOGNISERS = (_entangle, _timm, _dinov2, _dino)

LOOKED_FOR = (
    "embed/blocks/pool (entangle's protocol), "
    "patch_embed/_pos_embed/blocks/norm/forward_head (timm VisionTransformer), "
    "prepare_tokens_with_masks/blocks/norm (DINOv2 hub ViT), "
    "prepare_tokens/blocks/norm (DINO hub ViT)"
)


def find_split(backbone: nn.Module) -> BackboneSplit | None:
    """The split of ``backbone``, or None when no recogniser knows its layout."""
    for recognise in RECOGNISERS:
        split = recognise(backbone)
        if split is not None:
            return split
    return None


def split_of(backbone: nn.Module, name: str = "backbone", fallback: str = "") -> BackboneSplit:
    """The split of ``backbone``; raises one clear error when its layout is unknown.

    Args:
        backbone: the module to split.
        name: how the error names it (``"live"``, ``"reference"``...).
        fallback: what the caller offers instead (appended to the error).

    Raises:
        EntangleTypeError: naming the attributes looked for and ``fallback``.
    """
    split = find_split(backbone)
    if split is None:
        raise EntangleTypeError(
            f"{name} ({type(backbone).__name__}) cannot be split into a frozen prefix and a "
            f"trainable suffix: entangle looked for {LOOKED_FOR}; "
            + (fallback or "give the module embed(x), blocks and pool(h)")
        )
    return split


def suffix_parameters(backbone: nn.Module, split: BackboneSplit, split_at: int) -> set[int]:
    """Ids of the parameters of ``blocks[split_at:]`` and of the pooling modules."""
    ids = {id(p) for p in split.blocks[split_at:].parameters()}
    for module in split.pool_modules:
        ids |= {id(p) for p in module.parameters()}
    return ids
