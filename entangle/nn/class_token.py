"""The last block's class-token row alone, for features that read only that row.

With class-token pooling (``norm(h)[:, 0]``: entangle's ViTs, timm ``global_pool='token'``,
the DINO / DINOv2 hub ViTs) the feature depends on one row of the last block's output. That
row needs the attention of the class token's query over every key and value, then the
output projection, the residual, ``norm2`` and the MLP on one row of T. So the last block
can compute k and v on all rows, q on row 0, and everything after the attention on row 0:
``row(h) == block(h)[:, :1]`` up to float rounding (the GEMMs block rows differently, so it
is not bit-identical; every op is the block's own, on fewer rows). docs/records.md (ProbeSet) and
docs/performance.md give the cost and the measured tolerance.

Used only where nothing needs the other rows or a gradient: the ProbeSet evaluation and the
reference suffix of :class:`~entangle.nn.prefix.SharedPrefix` (both without autograd, in eval
mode). :func:`class_token_row` returns None, and the caller runs the full block, for a
block type not recognised, a block or attention with hooks, a block in training mode, or
autograd enabled; the pooling side is :attr:`BackboneSplit.class_token_pool
<entangle.nn.splits.BackboneSplit>`.

Recognised blocks: a block whose class defines ``forward_class_token`` beside its own
``forward`` (entangle's built-in ViT block), and timm's ``vision_transformer.Block`` with
timm's ``Attention`` (fused qkv, ``q_norm`` / ``k_norm``, ``norm``, ``gate``) and a per-token
MLP.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# timm MLP classes that act on each token alone (Linear / activation / norm / dropout)
_TIMM_TOKEN_MLPS = {"Mlp", "GluMlp", "SwiGLU", "SwiGLUPacked"}


def reads_class_token_only(pool: Callable) -> Callable:
    """Mark a backbone's ``pool`` as reading only row 0 of ``h`` through a per-token norm.

    A subclass that overrides ``pool`` loses the mark (and the class-token path with it).
    """
    pool.reads_class_token_only = True
    return pool


def class_token_attention(
    qkv: nn.Linear,
    x: torch.Tensor,
    num_heads: int,
    q_norm: nn.Module | None = None,
    k_norm: nn.Module | None = None,
) -> torch.Tensor:
    """The class token's attention output ``[n, 1, A]`` (before the output projection).

    ``qkv`` is the fused projection laid out ``(3, heads, head_dim)`` (DINO / timm); q comes
    from row 0 of ``x`` only, k and v from every row. Softmax scale ``head_dim ** -0.5``.
    """
    n, t, _ = x.shape
    dim = qkv.weight.shape[0] // 3
    head_dim = dim // num_heads
    w, b = qkv.weight, qkv.bias
    q = F.linear(x[:, :1], w[:dim], None if b is None else b[:dim])
    kv = F.linear(x, w[dim:], None if b is None else b[dim:])
    q = q.reshape(n, 1, num_heads, head_dim).transpose(1, 2)
    k, v = kv.reshape(n, t, 2, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    if q_norm is not None:
        q, k = q_norm(q), k_norm(k)
    out = F.scaled_dot_product_attention(q, k, v)  # [n, heads, 1, head_dim]
    return out.transpose(1, 2).reshape(n, 1, dim)


def _defined_in(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def _is_timm(module: nn.Module, name: str) -> bool:
    cls = type(module)
    return cls.__name__ == name and cls.__module__.startswith("timm.")


def _hooked(*modules: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _timm_row(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    attn = block.attn
    if not (_is_timm(attn, "Attention") and type(attn.qkv) is nn.Linear):
        return None
    if type(block.mlp).__name__ not in _TIMM_TOKEN_MLPS or _hooked(attn):
        return None
    gate = getattr(attn, "gate", None)
    norm = getattr(attn, "norm", None) or nn.Identity()

    def row(h: torch.Tensor) -> torch.Tensor:
        x = block.norm1(h)
        a = norm(class_token_attention(attn.qkv, x, attn.num_heads, attn.q_norm, attn.k_norm))
        if gate is not None:
            a = a * gate(x[:, :1]).sigmoid()
        h = h[:, :1] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(a))))
        return h + block.drop_path2(block.ls2(block.mlp(block.norm2(h))))

    return row


def class_token_row(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``h [n, T, D] -> block(h)[:, :1]`` computed on the class token's row, or None.

    None (run the full block) when autograd is enabled, the block or a submodule is in
    training mode, the block has forward hooks, or its type is not recognised.
    """
    if torch.is_grad_enabled() or _hooked(block) or any(m.training for m in block.modules()):
        return None
    cls = type(block)
    own = _defined_in(cls, "forward_class_token")
    if own is not None and own is _defined_in(cls, "forward"):
        return block.forward_class_token
    if _is_timm(block, "Block"):
        return _timm_row(block)
    return None
