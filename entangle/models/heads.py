"""GCD heads with the key layouts of SimGCD / the EAGC code, so their checkpoints load strictly.

- :class:`GCDHead` -- SimGCD's ``DINOHead``: a projector MLP ``mlp`` (``mlp.0``, ``mlp.2``,
  ``mlp.4`` for three layers, GELU between) for the contrastive losses, and ``last_layer``, a
  weight-normalised cosine classifier without bias over all classes, applied to the
  L2-normalised *input* feature (not to the projection).
- :class:`ReLUMLP` -- the EAGC code's ``MLP_Head`` (``mlp.N`` Linear layers, ReLU between and
  after), which it puts in front of the DINO head (``projector = Sequential(MLP_Head,
  DINOHead)``) and which SelEx uses as its feature head.
- :class:`DINOProjectionHead` -- DINO's original projection head (MLP to a bottleneck, then
  a weight-normalised layer on the normalised bottleneck), SelEx's ``projector``.

Weight normalisation uses ``torch.nn.utils.parametrizations.weight_norm`` (keys
``last_layer.parametrizations.weight.original0`` = g ``[K, 1]`` and ``original1`` = v
``[K, in]``); the legacy spelling ``last_layer.weight_g`` / ``weight_v`` written by
``torch.nn.utils.weight_norm`` is renamed on load, so both load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from entangle.errors import EntangleValueError

HEAD_CONFIGS: dict[str, dict[str, int]] = {
    # SimGCD's DINOHead on a ViT
    "simgcd": {"proj_dim": 256, "hidden_dim": 2048, "nlayers": 3},
    # the small head of the embedded digits model
    "tiny": {"proj_dim": 128, "hidden_dim": 256, "nlayers": 3},
}

_LEGACY = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def remap_weight_norm_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename legacy ``*.weight_g`` / ``*.weight_v`` keys to the parametrization spelling."""
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if leaf in _LEGACY:
            key = f"{head}.{_LEGACY[leaf]}" if head else _LEGACY[leaf]
        out[key] = value
    return out


def _legacy_weight_norm_hook(module, state_dict, prefix, *args) -> None:
    # load_state_dict pre-hook: rename in place, so strict loading sees the new spelling
    for leaf, new in _LEGACY.items():
        for key in [k for k in state_dict if k.startswith(prefix) and k.endswith("." + leaf)]:
            state_dict[key[: -len(leaf)] + new] = state_dict.pop(key)


def _mlp(in_dim: int, out_dim: int, hidden_dim: int, nlayers: int, act: type[nn.Module]):
    """``Linear`` layers with ``act`` between them (indices 0, 2, 4, ...); one layer is a bare
    ``Linear`` (keys ``mlp.weight``), as in DINO."""
    if nlayers < 1:
        raise EntangleValueError(f"nlayers must be >= 1, got {nlayers}")
    if nlayers == 1:
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), act()]
    for _ in range(nlayers - 2):
        layers += [nn.Linear(hidden_dim, hidden_dim), act()]
    layers.append(nn.Linear(hidden_dim, out_dim))
    return nn.Sequential(*layers)


def _init_linear(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _cosine_layer(in_dim: int, out_dim: int, *, learn_norm: bool) -> nn.Linear:
    layer = weight_norm(nn.Linear(in_dim, out_dim, bias=False))
    g = layer.parametrizations.weight.original0
    with torch.no_grad():
        g.fill_(1.0)  # unit-norm rows: logits are cosines
    g.requires_grad_(learn_norm)
    return layer


class GCDHead(nn.Module):
    """SimGCD head: ``forward(x) -> (proj [n, proj_dim], logits [n, K])``.

    ``proj = mlp(x)`` feeds the contrastive losses; ``logits = last_layer(x / ||x||)`` are
    cosine similarities to the ``K`` class prototypes (row norms fixed to 1 unless
    ``norm_last_layer=False``). Divide by a temperature (SimGCD: 0.1) before a softmax.

    Args:
        in_dim: backbone feature width ``D``.
        num_classes: ``K``, old plus novel classes.
        proj_dim, hidden_dim, nlayers: projector MLP shape (SimGCD: 256, 2048, 3).
        norm_last_layer: keep the classifier's row norms g fixed at 1.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        proj_dim: int = 256,
        hidden_dim: int = 2048,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise EntangleValueError(
                f"in_dim and num_classes must be positive, got {in_dim} and {num_classes}"
            )
        self.config = {
            "in_dim": in_dim,
            "num_classes": num_classes,
            "proj_dim": proj_dim,
            "hidden_dim": hidden_dim,
            "nlayers": nlayers,
        }
        self.num_classes = num_classes
        self.mlp = _mlp(in_dim, proj_dim, hidden_dim, nlayers, nn.GELU)
        _init_linear(self.mlp)
        self.last_layer = _cosine_layer(in_dim, num_classes, learn_norm=not norm_last_layer)
        self.register_load_state_dict_pre_hook(_legacy_weight_norm_hook)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[n, D]`` to ``(proj [n, proj_dim], logits [n, K])``."""
        return self.mlp(x), self.last_layer(F.normalize(x, dim=-1))


def build_head(name: str, in_dim: int, num_classes: int) -> GCDHead:
    """A :class:`GCDHead` from :data:`HEAD_CONFIGS` (``"simgcd"`` or ``"tiny"``)."""
    if name not in HEAD_CONFIGS:
        raise EntangleValueError(f"unknown head {name!r}; choose one of {sorted(HEAD_CONFIGS)}")
    return GCDHead(in_dim, num_classes, **HEAD_CONFIGS[name])


class ReLUMLP(nn.Module):
    """The EAGC code's ``MLP_Head``: ``relu(mlp(x))``, ``[n, in_dim] -> [n, out_dim]``.

    Its ``mlp`` is always a ``Sequential`` (keys ``mlp.0.*`` even for one layer).
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden_dim: int = 2048, nlayers: int = 1):
        super().__init__()
        mlp = _mlp(in_dim, out_dim, hidden_dim, nlayers, nn.ReLU)
        self.mlp = mlp if isinstance(mlp, nn.Sequential) else nn.Sequential(mlp)
        _init_linear(self.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mlp(x))


class DINOProjectionHead(nn.Module):
    """DINO's projection head: ``last_layer(normalize(mlp(x)))``, ``[n, D] -> [n, out_dim]``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        bottleneck_dim: int = 256,
        hidden_dim: int = 2048,
        nlayers: int = 3,
    ):
        super().__init__()
        self.mlp = _mlp(in_dim, bottleneck_dim, hidden_dim, nlayers, nn.GELU)
        _init_linear(self.mlp)
        self.last_layer = _cosine_layer(bottleneck_dim, out_dim, learn_norm=False)
        self.register_load_state_dict_pre_hook(_legacy_weight_norm_hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def _mlp_shape(state: Mapping[str, torch.Tensor], what: str) -> tuple[int, int, int, int]:
    """``(in_dim, out_dim, hidden_dim, nlayers)`` of an ``mlp`` given its (unprefixed) keys."""
    if "mlp.weight" in state:  # a single Linear
        w = state["mlp.weight"]
        return w.shape[1], w.shape[0], 0, 1
    idx = sorted(
        int(k.split(".")[1]) for k in state if k.startswith("mlp.") and k.endswith(".weight")
    )
    if not idx:
        raise EntangleValueError(f"{what}: no mlp.* weights found; keys: {sorted(state)[:8]}")
    first, last = state[f"mlp.{idx[0]}.weight"], state[f"mlp.{idx[-1]}.weight"]
    hidden = first.shape[0] if len(idx) > 1 else 0
    return first.shape[1], last.shape[0], hidden, len(idx)


def infer_head_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """:class:`GCDHead` arguments read off a head state dict (either weight-norm spelling).

    Returns:
        ``{"in_dim", "num_classes", "proj_dim", "hidden_dim", "nlayers"}``.
    """
    state = remap_weight_norm_keys(state)
    v = state.get("last_layer.parametrizations.weight.original1")
    if v is None:
        raise EntangleValueError(
            "head state dict has no last_layer weight (expected last_layer.weight_v or "
            "last_layer.parametrizations.weight.original1)"
        )
    in_dim, proj_dim, hidden, nlayers = _mlp_shape(state, "GCD head")
    if in_dim != v.shape[1]:
        raise EntangleValueError(
            f"head mlp takes {in_dim}-d input but last_layer takes {v.shape[1]}-d: this is not "
            "a SimGCD head (DINO's projection head classifies the bottleneck instead)"
        )
    return {
        "in_dim": in_dim,
        "num_classes": v.shape[0],
        "proj_dim": proj_dim,
        "hidden_dim": hidden or 2048,
        "nlayers": nlayers,
    }


def infer_relu_mlp_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """:class:`ReLUMLP` arguments (``in_dim``, ``out_dim``, ``hidden_dim``, ``nlayers``)."""
    in_dim, out_dim, hidden, nlayers = _mlp_shape(state, "MLP head")
    return {"in_dim": in_dim, "out_dim": out_dim, "hidden_dim": hidden or 2048, "nlayers": nlayers}


def infer_dino_projection_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """:class:`DINOProjectionHead` arguments read off its state dict."""
    state = remap_weight_norm_keys(state)
    v = state.get("last_layer.parametrizations.weight.original1")
    if v is None:
        raise EntangleValueError("projection head state dict has no last_layer weight")
    in_dim, bottleneck, hidden, nlayers = _mlp_shape(state, "DINO projection head")
    return {
        "in_dim": in_dim,
        "out_dim": v.shape[0],
        "bottleneck_dim": bottleneck,
        "hidden_dim": hidden or 2048,
        "nlayers": nlayers,
    }
