"""The backbone registry: exact names and families, refusals, the listing, every name builds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models import backbones
from entangle.models.backbones import ResidualMLP
from entangle.models.registry import BackboneRegistry, backbone_names, build_backbone
from entangle.models.vit import VIT_CONFIGS, VisionTransformer


def test_exact_names_and_families_build_with_their_arguments():
    reg = BackboneRegistry()
    calls = []

    @reg.register("mlp")
    def mlp(**kw):
        calls.append(("mlp", kw))
        return "an mlp"

    table = {"net-a": 1}

    @reg.register("net-*", members=table)
    def net(name, **kw):
        calls.append((name, kw))
        return f"a {name}"

    assert mlp.__name__ == "mlp"  # the decorator hands the builder back unchanged
    assert reg.build("mlp", dim=3) == "an mlp"
    assert reg.build("net-a", depth=2) == "a net-a"
    assert calls == [("mlp", {"dim": 3}), ("net-a", {"depth": 2})]
    # the family's members are its table, read at each look-up
    with pytest.raises(EntangleValueError, match="unknown backbone 'net-b'"):
        reg.build("net-b")
    table["net-b"] = 2
    assert reg.names() == ["mlp", "net-a", "net-b"]
    assert reg.build("net-b") == "a net-b"


def test_duplicates_and_malformed_registrations_are_refused():
    reg = BackboneRegistry()
    reg.register("mlp")(dict)
    reg.register("net-*", members=["net-a"])(dict)
    cases = [
        (lambda: reg.register("mlp")(list), "'mlp' is registered twice"),
        (lambda: reg.register("net-*", members=["net-z"])(list), "'net-\\*' is registered twice"),
        (lambda: reg.register("net-a")(list), "already a member of the family 'net-\\*'"),
        (lambda: reg.register("x-*", members=["x-a", "mlp"])(list), "\\['mlp'\\] do not start"),
        (lambda: reg.register("m*", members=["mlp"])(list), "\\['mlp'\\] already registered"),
        (lambda: reg.register("y-*"), "needs members="),
        (lambda: reg.register("y", members=["y"]), "needs members="),
        (lambda: reg.register("*", members=[]), "non-empty string"),
    ]
    for register, match in cases:
        with pytest.raises(EntangleValueError, match=match):
            register()
    assert reg.names() == ["mlp", "net-a"]  # nothing refused was added


def test_the_listing_names_every_builtin_backbone():
    assert backbone_names() == sorted(["digits-mlp", *VIT_CONFIGS])


def test_unknown_names_get_one_line_listing_the_known_ones():
    for name in ("resnet", "vit-h14"):
        with pytest.raises(EntangleValueError) as err:
            build_backbone(name)
        message = str(err.value)
        assert "\n" not in message
        assert message == f"unknown backbone {name!r}; known: {', '.join(backbone_names())}"
    with pytest.raises(EntangleTypeError, match="must be a string, got int"):
        build_backbone(3)


def test_backbones_module_keeps_its_build_backbone():
    assert backbones.build_backbone is build_backbone
    assert isinstance(backbones.build_backbone("digits-mlp", dim=8, depth=1), ResidualMLP)


@pytest.mark.parametrize("name", backbone_names())
def test_every_listed_name_builds_and_maps_inputs_to_features(name):
    """Tiny on CPU where the builder takes sizes; the published ViTs on the meta device
    (shapes only: no memory, no time), at their configured input size."""
    if name == "digits-mlp":
        model = build_backbone(name, in_dim=12, dim=8, depth=2)
        x = torch.randn(3, 12)
        assert (model.feature_dim, len(model.blocks)) == (8, 2)
    else:
        cfg = VIT_CONFIGS[name]
        device = "cpu" if name == "vit-tiny-test" else "meta"
        with torch.device(device):
            model = build_backbone(name)
            x = torch.randn(3, cfg.in_chans, cfg.img_size, cfg.img_size)
        assert isinstance(model, VisionTransformer)
        assert (model.feature_dim, len(model.blocks)) == (cfg.embed_dim, cfg.depth)
    assert model(x).shape == (3, model.feature_dim)


def test_importing_the_models_does_not_import_optional_dependencies():
    code = (
        "import sys, json, entangle.models, entangle.models.registry; "
        "from entangle.models.registry import backbone_names; "
        "print(json.dumps([backbone_names(), "
        "sorted(m for m in ('timm', 'torchvision') if m in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, loaded = json.loads(out.stdout)
    assert names == backbone_names() and loaded == []
