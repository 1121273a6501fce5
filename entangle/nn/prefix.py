"""Frozen-prefix splitting: run shared frozen leading blocks once, fork into the suffixes.

Backbones are cut by :mod:`entangle.nn.splits`: entangle's protocol (``embed``, ``blocks``,
``pool``), timm's ``VisionTransformer`` (register tokens included) and the DINO / DINOv2
torch.hub ViTs are recognised; ``run_suffix(run_prefix(x, i), i)`` equals ``forward(x)``, and
``suffix_features`` (no autograd) equals it up to float rounding.
"""

from __future__ import annotations

import torch

from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.nn.class_token import class_token_row
from entangle.nn.splits import BackboneSplit, find_split, split_of, suffix_parameters

SHARED_FALLBACK = (
    "pass split_at=0 to run both models in full (nothing shared), or give the module "
    "embed(x), blocks and pool(h)"
)


def check_protocol(
    backbone: torch.nn.Module, name: str = "backbone", fallback: str = SHARED_FALLBACK
) -> BackboneSplit:
    """The split of ``backbone``; an EntangleTypeError naming what is missing otherwise."""
    return split_of(backbone, name, fallback)


def first_trainable_block(backbone: torch.nn.Module, fallback: str = SHARED_FALLBACK) -> int:
    """Index of the first block with a trainable parameter (0 if the stem itself trains).

    SimGCD freezes everything but ``blocks[grad_from_block:]``, so on its backbones this is
    ``grad_from_block``. Returns ``len(blocks)`` when every block is frozen.
    """
    split = check_protocol(backbone, fallback=fallback)
    if any(p.requires_grad for p in prefix_parameters(backbone, 0)):
        return 0
    for i, block in enumerate(split.blocks):
        if any(p.requires_grad for p in block.parameters()):
            return i
    return len(split.blocks)


def prefix_parameters(backbone: torch.nn.Module, split_at: int) -> list[torch.nn.Parameter]:
    """Parameters used by the stem and ``blocks[:split_at]`` (everything but the suffix)."""
    suffix = suffix_parameters(backbone, check_protocol(backbone), split_at)
    return [p for p in backbone.parameters() if id(p) not in suffix]


def prefix_fingerprint(backbone: torch.nn.Module, split_at: int) -> list[tuple[int, int, int]]:
    """Identity, storage and version counter of every prefix parameter.

    Collected afresh on each call: a parameter replaced on the module or given new storage
    (``p.data = ...``, what ``Module.to()`` does) keeps no version counter to watch. Writes
    through ``p.data.<op>_()`` bypass the version counter and are not seen.
    """
    return [(id(p), p.data_ptr(), p._version) for p in prefix_parameters(backbone, split_at)]


def run_prefix(backbone: torch.nn.Module, x: torch.Tensor, split_at: int) -> torch.Tensor:
    """``blocks[:split_at](embed(x))``."""
    split = check_protocol(backbone)
    h = split.embed(x)
    for block in split.blocks[:split_at]:
        h = block(h)
    return h


def run_suffix(backbone: torch.nn.Module, h: torch.Tensor, split_at: int) -> torch.Tensor:
    """``pool(blocks[split_at:](h))`` -> ``[n, D]``."""
    split = check_protocol(backbone)
    for block in split.blocks[split_at:]:
        h = block(h)
    return split.pool(h)


def suffix_features(backbone: torch.nn.Module, h: torch.Tensor, split_at: int) -> torch.Tensor:
    """:func:`run_suffix`'s features for callers that need nothing else (no autograd, eval).

    With class-token pooling (``BackboneSplit.class_token_pool``) and a recognised last
    block, that block runs on the class token's row only (:mod:`entangle.nn.class_token`):
    equal to :func:`run_suffix` up to float rounding, not bit for bit. Anything else (autograd
    on, training mode, other pooling, an unknown block) runs :func:`run_suffix` itself.
    """
    split = check_protocol(backbone)
    blocks = list(split.blocks[split_at:])
    row = class_token_row(blocks[-1]) if split.class_token_pool and blocks else None
    if row is not None:
        blocks[-1] = row
    for block in blocks:
        h = block(h)
    return split.pool(h)


class SharedPrefix:
    """Run the frozen prefix shared by a live and a reference backbone once, then fork.

    The prefixes must be bit-identical (checked with ``torch.equal`` at construction and
    re-checked whenever a prefix parameter's version counter, storage or identity changes,
    i.e. after an in-place update, ``p.data = ...`` or a replaced parameter; writes through
    ``p.data.<op>_()`` bypass the version counter and are not seen). The reference suffix
    runs without autograd, and must be in eval mode (``reference.eval()``); its features come
    from :func:`suffix_features` (with class-token pooling, the last block on the class
    token's row: equal to ``reference(x)`` up to float rounding, docs/performance.md).

    Args:
        live: the backbone being trained.
        reference: the frozen reference backbone (same architecture).
        split_at: first block that differs; default: the live model's first trainable block
            (SimGCD's ``grad_from_block``). ``split_at=0`` on a module entangle cannot split
            runs both models in full (nothing shared).

    Example:
        >>> reference.eval()                                # doctest: +SKIP
        >>> shared = SharedPrefix(backbone, reference)      # doctest: +SKIP
        >>> z, z_ref = shared(x)                            # doctest: +SKIP
    """

    def __init__(
        self, live: torch.nn.Module, reference: torch.nn.Module, split_at: int | None = None
    ):
        self.live, self.reference = live, reference
        self.split_at = None if split_at is None else int(split_at)
        splits = [find_split(m) for m in (live, reference)]
        if self.split_at == 0 and None in splits:
            # the documented fallback for a module entangle cannot cut: nothing is shared,
            # both models run in full (what a user's loop without SharedPrefix does)
            self._whole = True
            return
        self._whole = False
        blocks = check_protocol(live, "live").blocks
        check_protocol(reference, "reference")
        if self.split_at is None:
            self.split_at = first_trainable_block(live)
        if not 0 <= self.split_at <= len(blocks):
            raise EntangleValueError(
                f"split_at={split_at} outside 0..{len(blocks)} (the number of blocks)"
            )
        trainable = [p for p in prefix_parameters(live, self.split_at) if p.requires_grad]
        if trainable:
            raise EntangleValueError(
                f"the live prefix (stem + blocks[:{self.split_at}]) has {len(trainable)} "
                "trainable parameters; only frozen blocks can be shared: freeze them or lower "
                "split_at"
            )
        self._versions = None
        self._verify()

    def _current_versions(self) -> list[tuple[int, int, int]]:
        return prefix_fingerprint(self.live, self.split_at) + prefix_fingerprint(
            self.reference, self.split_at
        )

    def _verify(self) -> None:
        live = prefix_parameters(self.live, self.split_at)
        ref = prefix_parameters(self.reference, self.split_at)
        if len(live) != len(ref) or not all(
            a.shape == b.shape and torch.equal(a, b.to(a.device))
            for a, b in zip(live, ref, strict=True)
        ):
            raise EntangleValueError(
                f"live and reference backbones differ in their first {self.split_at} blocks "
                "(embed included); a shared prefix needs bit-identical frozen weights: load the "
                "same pretrained weights into both, or run the reference separately"
            )
        self._versions = self._current_versions()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of ``x`` under both models: ``(z [n, D] with grad, z_ref [n, D] detached)``."""
        if self.reference.training:
            raise EntangleRuntimeError(
                "the reference backbone is in training mode; call reference.eval() so its "
                "features are deterministic"
            )
        if self._whole:
            with torch.no_grad():
                z_ref = self.reference(x)
            return self.live(x), z_ref
        if self._current_versions() != self._versions:
            self._verify()
        with torch.no_grad():
            h = run_prefix(self.live, x, self.split_at)
            z_ref = suffix_features(self.reference, h, self.split_at)
        return run_suffix(self.live, h, self.split_at), z_ref
