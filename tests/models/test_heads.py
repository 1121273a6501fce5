"""SimGCD / EAGC / DINO head layouts, their outputs, and both weight-norm spellings."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entangle.errors import EntangleValueError
from entangle.models.heads import (
    DINOProjectionHead,
    GCDHead,
    ReLUMLP,
    build_head,
    infer_dino_projection_config,
    infer_head_config,
    infer_relu_mlp_config,
    remap_weight_norm_keys,
)

G = "last_layer.parametrizations.weight.original0"
V = "last_layer.parametrizations.weight.original1"


def legacy_weight_norm_linear(in_dim: int, out_dim: int) -> nn.Module:
    """What ``torch.nn.utils.weight_norm`` (used by SimGCD and the EAGC code) writes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated, but that is the point
        return nn.utils.weight_norm(nn.Linear(in_dim, out_dim, bias=False))


def test_simgcd_layout_key_names_and_shapes():
    head = GCDHead(768, 100)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        "mlp.0.weight": (2048, 768),
        "mlp.0.bias": (2048,),
        "mlp.2.weight": (2048, 2048),
        "mlp.2.bias": (2048,),
        "mlp.4.weight": (256, 2048),
        "mlp.4.bias": (256,),
        G: (100, 1),
        V: (100, 768),  # the classifier reads the backbone feature, not the projection
    }
    assert isinstance(head.mlp[1], nn.GELU) and isinstance(head.mlp[3], nn.GELU)


def test_forward_projection_and_cosine_logits():
    head = GCDHead(32, 7, hidden_dim=16, proj_dim=8)
    with torch.no_grad():
        head.mlp[0].bias.normal_()
    x = torch.randn(5, 32)
    proj, logits = head(x)
    assert proj.shape == (5, 8) and logits.shape == (5, 7)
    torch.testing.assert_close(proj, head.mlp(x))
    v = head.state_dict()[V]
    cosine = F.normalize(x, dim=-1) @ F.normalize(v, dim=-1).T  # g = 1: pure cosines
    torch.testing.assert_close(logits, cosine)
    assert logits.abs().max() <= 1 + 1e-6


def test_norm_of_last_layer_fixed_unless_asked():
    fixed = GCDHead(8, 3, hidden_dim=8)
    free = GCDHead(8, 3, hidden_dim=8, norm_last_layer=False)
    assert not fixed.last_layer.parametrizations.weight.original0.requires_grad
    assert free.last_layer.parametrizations.weight.original0.requires_grad
    assert torch.equal(fixed.state_dict()[G], torch.ones(3, 1))


def test_legacy_weight_norm_spelling_loads_strictly():
    legacy = legacy_weight_norm_linear(16, 5)
    with torch.no_grad():
        legacy.weight_g.uniform_(0.5, 2.0)  # a learned norm, to see g travel
    head = GCDHead(16, 5, hidden_dim=8)
    state = {k: v for k, v in head.state_dict().items() if k.startswith("mlp.")}
    state.update({f"last_layer.{k}": v for k, v in legacy.state_dict().items()})
    assert "last_layer.weight_g" in state
    assert str(head.load_state_dict(state, strict=True)) == "<All keys matched successfully>"
    x = torch.randn(4, 16)
    torch.testing.assert_close(head(x)[1], legacy(F.normalize(x, dim=-1)))


def test_legacy_spelling_loads_inside_a_parent_module():
    parent = nn.Sequential(ReLUMLP(16, 16), GCDHead(16, 5, hidden_dim=8))
    legacy = legacy_weight_norm_linear(16, 5)
    state = parent.state_dict()
    del state[f"1.{G}"], state[f"1.{V}"]
    state.update({f"1.last_layer.{k}": v for k, v in legacy.state_dict().items()})
    parent.load_state_dict(state, strict=True)
    torch.testing.assert_close(parent[1].state_dict()[V], legacy.weight_v)


def test_remap_weight_norm_keys():
    state = {"1.last_layer.weight_g": 1, "weight_v": 2, "mlp.0.weight": 3}
    assert remap_weight_norm_keys(state) == {
        "1.last_layer.parametrizations.weight.original0": 1,
        "parametrizations.weight.original1": 2,
        "mlp.0.weight": 3,
    }


@pytest.mark.parametrize("nlayers", [1, 2, 3, 4])
def test_infer_head_config_round_trip(nlayers):
    head = GCDHead(24, 11, proj_dim=12, hidden_dim=20, nlayers=nlayers)
    cfg = infer_head_config(head.state_dict())
    expected_hidden = 20 if nlayers > 1 else 2048  # one layer has no hidden width to read
    assert cfg == {
        "in_dim": 24,
        "num_classes": 11,
        "proj_dim": 12,
        "hidden_dim": expected_hidden,
        "nlayers": nlayers,
    }
    if nlayers == 1:
        assert "mlp.weight" in head.state_dict()  # DINO's single-Linear spelling


def test_tiny_head_config():
    head = build_head("tiny", 128, 10)
    assert head.mlp[0].out_features == 256
    assert head(torch.randn(2, 128))[1].shape == (2, 10)
    with pytest.raises(EntangleValueError, match="unknown head"):
        build_head("huge", 8, 2)


def test_relu_mlp_matches_eagc_mlp_head_layout():
    one = ReLUMLP(768, 768)
    assert {k: tuple(v.shape) for k, v in one.state_dict().items()} == {
        "mlp.0.weight": (768, 768),
        "mlp.0.bias": (768,),
    }
    three = ReLUMLP(8, 6, hidden_dim=10, nlayers=3)
    assert sorted(three.state_dict()) == [
        f"mlp.{i}.{p}" for i in (0, 2, 4) for p in ("bias", "weight")
    ]
    x = torch.randn(4, 8)
    out = three(x)
    torch.testing.assert_close(out, three.mlp(x).clamp_min(0))
    assert infer_relu_mlp_config(three.state_dict()) == {
        "in_dim": 8,
        "out_dim": 6,
        "hidden_dim": 10,
        "nlayers": 3,
    }


def test_dino_projection_head_classifies_the_bottleneck():
    head = DINOProjectionHead(32, 50, bottleneck_dim=8, hidden_dim=16)
    sd = head.state_dict()
    assert sd[V].shape == (50, 8)
    x = torch.randn(3, 32)
    expected = F.normalize(head.mlp(x), dim=-1) @ F.normalize(sd[V], dim=-1).T
    torch.testing.assert_close(head(x), expected)
    assert infer_dino_projection_config(sd) == {
        "in_dim": 32,
        "out_dim": 50,
        "bottleneck_dim": 8,
        "hidden_dim": 16,
        "nlayers": 3,
    }
    with pytest.raises(EntangleValueError, match="not a SimGCD head"):
        infer_head_config(sd)


def test_bad_sizes_are_rejected():
    with pytest.raises(EntangleValueError, match="positive"):
        GCDHead(0, 3)
    with pytest.raises(EntangleValueError, match="nlayers"):
        GCDHead(4, 3, nlayers=0)
