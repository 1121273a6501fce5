"""Frozen-prefix splitting: run shared frozen leading blocks once, fork into the suffixes.

Backbones follow entangle's protocol: ``embed(x) -> h``, ``blocks: nn.ModuleList``,
``pool(h) -> z [n, D]``, ``forward(x) = pool(blocks(embed(x)))`` (the built-in ViT, timm
adapters and the digits backbone all do).
"""

from __future__ import annotations

import torch

from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError


def check_protocol(backbone: torch.nn.Module, name: str = "backbone") -> None:
    """Raise a TypeError saying what is missing when ``backbone`` cannot be split."""
    missing = [a for a in ("embed", "blocks", "pool") if not hasattr(backbone, a)]
    if missing:
        raise EntangleTypeError(
            f"{name} ({type(backbone).__name__}) lacks {', '.join(missing)}: prefix sharing "
            "needs embed(x), blocks (nn.ModuleList) and pool(h); wrap your model or pass "
            "split_at=0 / use a plain forward"
        )


def first_trainable_block(backbone: torch.nn.Module) -> int:
    """Index of the first block with a trainable parameter (0 if the stem itself trains).

    Returns ``len(blocks)`` when every block is frozen.
    """
    check_protocol(backbone)
    if any(p.requires_grad for p in prefix_parameters(backbone, 0)):
        return 0
    for i, block in enumerate(backbone.blocks):
        if any(p.requires_grad for p in block.parameters()):
            return i
    return len(backbone.blocks)


def _pool_parameters(backbone: torch.nn.Module) -> list[torch.nn.Parameter]:
    # final norm layers live beside the blocks; the protocol names them `norm` when present
    norm = getattr(backbone, "norm", None)
    return list(norm.parameters()) if isinstance(norm, torch.nn.Module) else []


def prefix_parameters(backbone: torch.nn.Module, split_at: int) -> list[torch.nn.Parameter]:
    """Parameters used by ``embed`` and ``blocks[:split_at]``."""
    suffix = {id(p) for p in backbone.blocks[split_at:].parameters()}
    suffix |= {id(p) for p in _pool_parameters(backbone)}
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
    h = backbone.embed(x)
    for block in backbone.blocks[:split_at]:
        h = block(h)
    return h


def run_suffix(backbone: torch.nn.Module, h: torch.Tensor, split_at: int) -> torch.Tensor:
    """``pool(blocks[split_at:](h))`` -> ``[n, D]``."""
    for block in backbone.blocks[split_at:]:
        h = block(h)
    return backbone.pool(h)


class SharedPrefix:
    """Run the frozen prefix shared by a live and a reference backbone once, then fork.

    The prefixes must be bit-identical (checked with ``torch.equal`` at construction and
    re-checked whenever a prefix parameter's version counter, storage or identity changes,
    i.e. after an in-place update, ``p.data = ...`` or a replaced parameter; writes through
    ``p.data.<op>_()`` bypass the version counter and are not seen). The reference suffix
    runs without autograd.

    Args:
        live: the backbone being trained.
        reference: the frozen reference backbone (same architecture).
        split_at: first block that differs; default: the live model's first trainable block.

    Example:
        >>> shared = SharedPrefix(backbone, reference)      # doctest: +SKIP
        >>> z, z_ref = shared(x)                            # doctest: +SKIP
    """

    def __init__(
        self, live: torch.nn.Module, reference: torch.nn.Module, split_at: int | None = None
    ):
        check_protocol(live, "live")
        check_protocol(reference, "reference")
        self.live, self.reference = live, reference
        self.split_at = first_trainable_block(live) if split_at is None else int(split_at)
        if not 0 <= self.split_at <= len(live.blocks):
            raise EntangleValueError(
                f"split_at={split_at} outside 0..{len(live.blocks)} (the number of blocks)"
            )
        trainable = [p for p in prefix_parameters(live, self.split_at) if p.requires_grad]
        if trainable:
            raise EntangleValueError(
                f"the live prefix (embed + blocks[:{self.split_at}]) has {len(trainable)} "
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
        if self._current_versions() != self._versions:
            self._verify()
        with torch.no_grad():
            h = run_prefix(self.live, x, self.split_at)
            if self.reference.training:
                raise EntangleRuntimeError(
                    "the reference backbone is in training mode; call reference.eval() so its "
                    "features are deterministic"
                )
            z_ref = run_suffix(self.reference, h, self.split_at)
        return run_suffix(self.live, h, self.split_at), z_ref
