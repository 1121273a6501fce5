"""Safe loading, format detection and strict round trips for every supported layout."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import os
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from entangle.checkpoints import (
    CheckpointError,
    detect_format,
    load_gcd_checkpoint,
    load_gcd_object,
    safe_load,
    save_checkpoint,
)
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.heads import DINOProjectionHead, GCDHead, ReLUMLP
from entangle.models.vit import VIT_CONFIGS, VisionTransformer, ViTConfig, build_vit

K = 6  # classes of the tiny models


def to_legacy(state: dict) -> dict:
    """The ``weight_g`` / ``weight_v`` spelling that ``nn.utils.weight_norm`` writes."""
    return {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


@pytest.fixture
def vit():
    return VisionTransformer(VIT_CONFIGS["vit-tiny-test"]).eval()


@pytest.fixture
def head():
    return GCDHead(64, K, hidden_dim=32, proj_dim=16).eval()


@pytest.fixture
def images():
    return torch.randn(3, 3, 32, 32)


def assert_same_model(loaded, backbone, head, images):
    with torch.no_grad():
        z = backbone(images)
        torch.testing.assert_close(loaded.backbone(images), z, rtol=0, atol=0)
        if head is not None:
            for got, want in zip(loaded.head(z), head(z), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------ safe_load


def test_numpy_float64_accuracies_load_with_weights_only(tmp_path):
    before = set(torch.serialization.get_safe_globals())
    path = tmp_path / "ckpt.pth"
    torch.save({"best_all_acc": np.float64(0.625), "n": np.int64(3), "w": torch.ones(2)}, path)
    obj = safe_load(path)
    assert obj["best_all_acc"] == 0.625 and isinstance(obj["best_all_acc"], np.float64)
    assert obj["n"] == 3
    # the allow-list lived in a context manager only
    assert set(torch.serialization.get_safe_globals()) == before


def test_numpy_1_spelling_of_the_scalar_constructor_loads(tmp_path):
    """Files written under numpy 1.x name ``numpy.core.multiarray.scalar``."""
    path = tmp_path / "new.pth"
    torch.save({"best_all_acc": np.float64(0.5)}, path)
    old = tmp_path / "old.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                # protocol-2 GLOBAL opcodes are newline-terminated text: renaming is safe
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\nscalar" in data
            dst.writestr(info, data)
    assert safe_load(old)["best_all_acc"] == 0.5


class CreatesFile:
    """A pickle payload: unpickling it calls ``open(path, "w")``, creating the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    victim = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "payload": CreatesFile(victim)}, path)
    assert not victim.exists()
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as info:
        safe_load(path)
    assert "open" in str(info.value)
    with pytest.raises(CheckpointError):
        load_gcd_checkpoint(path)
    assert not victim.exists()


def test_objects_needing_code_load_only_when_trusted(tmp_path):
    path = tmp_path / "dino_full.pth"  # DINO full checkpoints carry an argparse.Namespace
    torch.save({"args": argparse.Namespace(lr=0.1), "teacher": {}}, path)
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*--trust-checkpoint"):
        safe_load(path)
    assert safe_load(path, trust=True)["args"].lr == 0.1


@pytest.mark.parametrize("keep", [0, 20, 0.5, -10])
def test_truncated_file_is_a_clear_error(tmp_path, keep):
    path = tmp_path / "ckpt.pth"
    torch.save({"w": torch.randn(1000)}, path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a checkpoint " * 20)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        safe_load(tmp_path / "absent.pth")
    assert issubclass(CheckpointError, EntangleValueError)


# ------------------------------------------------------------------------- detect_format


def test_detect_format_names_each_layout(vit, head):
    bb, hd = vit.state_dict(), head.state_dict()
    assert detect_format({"entangle_checkpoint": 1, "backbone": bb, "head": hd}) == "entangle"
    sg = {**prefixed(bb, "0."), **prefixed(hd, "1.")}
    assert detect_format({"model": sg, "epoch": 2}) == "simgcd"
    assert detect_format({"model": prefixed(sg, "module.")}) == "simgcd"
    assert detect_format({"backbone_state_dict": bb, "projector_state_dict": hd}) == "eagc"
    assert (
        detect_format(
            {"backbone_state_dict": bb, "projector_state_dict": hd, "mlp_head_state_dict": {}}
        )
        == "selex"
    )
    assert detect_format(bb) == "vit"
    assert detect_format({"teacher": prefixed(bb, "backbone.")}) == "dino"


def test_detect_format_rejects_unknown_layouts():
    with pytest.raises(CheckpointError, match=r"unrecognised.*encoder.*--model"):
        detect_format({"encoder": {"w": torch.ones(1)}, "step": 3})
    with pytest.raises(CheckpointError, match="pickled whole model"):
        detect_format(nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="version 2"):
        load_gcd_object({"entangle_checkpoint": 2})


# -------------------------------------------------------------------------- round trips


def test_entangle_round_trip(tmp_path, vit, head, images):
    path = save_checkpoint(tmp_path / "run" / "ckpt.pth", vit, head, {"epoch": np.int64(4)})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temp file left
    loaded = load_gcd_checkpoint(path)
    assert loaded.format == "entangle" and loaded.num_classes == K
    assert loaded.meta["epoch"] == 4 and isinstance(loaded.meta["epoch"], int)
    assert loaded.meta["arch"]["backbone"]["kind"] == "vit"
    assert_same_model(loaded, vit, head, images)
    assert not loaded.backbone.training


def test_entangle_save_replaces_atomically_and_checks_meta(tmp_path, vit, head):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, vit, head, {"note": "first"})
    with pytest.raises(EntangleTypeError, match="meta.bad"):
        save_checkpoint(path, vit, head, {"bad": object()})
    assert safe_load(path)["meta"]["note"] == "first"  # the failed save left it intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_entangle_round_trip_of_the_digits_backbone(tmp_path):
    from entangle.models.backbones import ResidualMLP

    backbone = ResidualMLP(in_dim=64, dim=32, depth=3).eval()
    head = GCDHead(32, 10, hidden_dim=16, proj_dim=8).eval()
    loaded = load_gcd_checkpoint(save_checkpoint(tmp_path / "d.pth", backbone, head))
    assert_same_model(loaded, backbone, head, torch.randn(5, 8, 8))


@pytest.mark.parametrize(
    "arch",
    [
        {"factory": "os:system", "kwargs": {"command": "true"}},
        {"factory": "entangle.models.backbones:ResidualMLP", "kwargs": {"dim": 64}},
        {"kind": "timm", "config": {}},
        "vit",
    ],
)
def test_an_architecture_outside_the_closed_set_is_refused(vit, arch):
    """The file's architecture is data: no name in it is imported, even an entangle one."""
    obj = {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": arch}},
    }
    with pytest.raises(CheckpointError, match=r"does not build.*--model package.module:factory"):
        load_gcd_object(obj)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("depth", "3"),
        ("depth", True),
        ("embed_dim", -64),
        ("mlp_ratio", float("nan")),
        ("qkv_bias", 1),
        ("layer_scale", "x"),
        ("evil", 1),
        ("num_heads", 5),
    ],
)
def test_a_vit_config_in_the_file_is_validated(vit, field, value):
    config = VIT_CONFIGS["vit-tiny-test"].to_dict() | {field: value}
    obj = {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": config}}},
    }
    with pytest.raises(CheckpointError, match="meta.arch.backbone.config"):
        load_gcd_object(obj)


class System:
    """A pickle payload that calls ``os.system``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("layout", ["zip", "legacy", "raw"])
def test_os_system_pickles_are_named_as_code_not_as_corrupt(tmp_path, layout):
    """torch words the refusal differently across versions; entangle reads the globals."""
    import pickle

    victim = tmp_path / "victim"
    payload = {"w": torch.ones(1), "x": System(f"touch {victim}")}
    path = tmp_path / "evil.pt"
    if layout == "raw":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=layout == "zip")
    with pytest.raises(CheckpointError) as info:
        safe_load(path)
    message = str(info.value)
    assert f"{os.system.__module__}.system" in message and "--trust-checkpoint" in message
    assert "corrupt" not in message
    assert not victim.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_numpy_scalars_are_not_counted_as_code_in_either_layout(tmp_path, layout):
    path = tmp_path / "acc.pt"
    obj = {"best_all_acc": np.float64(0.5), "w": torch.ones(2)}
    torch.save(obj, path, _use_new_zipfile_serialization=layout == "zip")
    assert safe_load(path)["best_all_acc"] == 0.5


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("ddp", [False, True])
def test_simgcd_round_trip(tmp_path, vit, head, images, legacy, ddp):
    state = nn.Sequential(vit, head).state_dict()
    state = to_legacy(state) if legacy else state
    state = prefixed(state, "module.") if ddp else state
    optimizer = torch.optim.SGD(nn.Sequential(vit, head).parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": 7}, path)
    loaded = load_gcd_checkpoint(path)
    # SimGCD's train.py saves 'epoch': epoch + 1 (epochs finished), so the last epoch trained
    # (the teacher temperature analyze reads) is index 6
    assert (loaded.format, loaded.num_classes) == ("simgcd", K)
    assert loaded.meta == {"epoch": 6, "epochs_done": 7}
    assert any("module." in n for n in loaded.notes) == ddp
    assert_same_model(loaded, vit, head, images)


def eagc_projector(head):
    return nn.Sequential(ReLUMLP(64, 64), head).eval()


@pytest.mark.parametrize("legacy", [True, False])
def test_eagc_round_trip(tmp_path, vit, head, images, legacy):
    projector = eagc_projector(head)
    proj_state = projector.state_dict()
    assert "0.mlp.0.weight" in proj_state and "1.mlp.0.weight" in proj_state
    path = tmp_path / "SimGCD_cub_best_seed0.pth"
    torch.save(
        {
            "epoch": 12,
            "backbone_state_dict": vit.state_dict(),
            "projector_state_dict": to_legacy(proj_state) if legacy else proj_state,
            "best_all_acc": np.float64(0.61),
            "best_old_acc": np.float64(0.7),
            "best_new_acc": np.float64(0.55),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert loaded.format == "eagc" and loaded.num_classes == K
    assert loaded.meta == {
        "epoch": 12,
        "best_all_acc": 0.61,
        "best_old_acc": 0.7,
        "best_new_acc": 0.55,
    }
    assert all(type(v) in (int, float) for v in loaded.meta.values())
    assert_same_model(loaded, vit, projector, images)


def test_eagc_dinov2_register_backbone(tmp_path, images):
    cfg = replace(
        VIT_CONFIGS["vit-tiny-test"], num_register_tokens=4, layer_scale=1e-5, mask_token=True
    )
    backbone = VisionTransformer(cfg).eval()
    with torch.no_grad():
        for block in backbone.blocks:  # learned layer scales, not the init value
            block.ls1.gamma.uniform_(0.5, 1.5)
    projector = eagc_projector(GCDHead(64, K, hidden_dim=32))
    path = tmp_path / "dinov2.pth"
    torch.save(
        {
            "backbone_state_dict": backbone.state_dict(),
            "projector_state_dict": projector.state_dict(),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert loaded.backbone.config.num_register_tokens == 4
    assert_same_model(loaded, backbone, projector, images)


def test_selex_round_trip(tmp_path, vit, images):
    mlp_head = ReLUMLP(64, 64).eval()
    projector = DINOProjectionHead(64, 100, bottleneck_dim=16, hidden_dim=32).eval()
    path = tmp_path / "SelEx_cub_best_seed1.pth"
    torch.save(
        {
            "epoch": 3,
            "backbone_state_dict": vit.state_dict(),
            "projector_state_dict": to_legacy(projector.state_dict()),
            "mlp_head_state_dict": mlp_head.state_dict(),
            "best_all_acc": np.float64(0.5),
        },
        path,
    )
    loaded = load_gcd_checkpoint(path)
    assert (loaded.format, loaded.head, loaded.num_classes) == ("selex", None, None)
    assert any("k-means" in n for n in loaded.notes)
    assert_same_model(loaded, vit, None, images)
    with torch.no_grad():
        z = vit(images)
        torch.testing.assert_close(loaded.extras["mlp_head"](z), mlp_head(z), rtol=0, atol=0)
        torch.testing.assert_close(loaded.extras["projector"](z), projector(z), rtol=0, atol=0)


def test_plain_vit_and_dino_teacher_round_trip(tmp_path, vit, images):
    torch.save(vit.state_dict(), tmp_path / "reference.pth")
    loaded = load_gcd_checkpoint(tmp_path / "reference.pth")
    assert (loaded.format, loaded.head, loaded.num_classes) == ("vit", None, None)
    assert_same_model(loaded, vit, None, images)
    teacher = prefixed(vit.state_dict(), "backbone.")
    teacher["head.last_layer.weight_v"] = torch.randn(8, 4)
    torch.save({"teacher": teacher}, tmp_path / "teacher.pth")
    assert_same_model(load_gcd_checkpoint(tmp_path / "teacher.pth"), vit, None, images)


def test_full_vit_b16_simgcd_layout_round_trip():
    """The real ViT-B/16 + 100-class head layout, in memory (a 350 MB file is not needed)."""
    with torch.device("meta"):
        backbone, head = build_vit("vit-b16"), GCDHead(768, 100)
    gen = torch.Generator().manual_seed(0)
    original = nn.Sequential(backbone, head)
    state = {k: torch.rand(v.shape, generator=gen) - 0.5 for k, v in original.state_dict().items()}
    original.load_state_dict(state, assign=True)
    loaded = load_gcd_object({"model": prefixed(to_legacy(state), "module."), "epoch": 200})
    cfg = loaded.backbone.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.img_size) == (
        768,
        12,
        12,
        16,
        224,
    )
    assert loaded.num_classes == 100
    assert_same_model(loaded, backbone.eval(), head.eval(), torch.randn(1, 3, 32, 32))


# ------------------------------------------------------------------------------- failures


def test_missing_and_unexpected_keys_are_listed_with_the_format(tmp_path, vit, head):
    state = nn.Sequential(vit, head).state_dict()
    del state["0.blocks.2.norm1.weight"]
    state["0.blocks.2.extra"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as info:
        load_gcd_checkpoint(tmp_path / "c.pt")
    message = str(info.value)
    assert "simgcd layout" in message
    assert "missing keys (1): blocks.2.norm1.weight" in message
    assert "unexpected keys (1): blocks.2.extra" in message


def test_shape_mismatch_is_a_checkpoint_error(tmp_path, vit, head):
    state = nn.Sequential(vit, head).state_dict()
    state["0.blocks.1.attn.qkv.weight"] = torch.zeros(10, 64)
    torch.save({"model": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.qkv\.weight: file \(10, 64\)"):
        load_gcd_checkpoint(tmp_path / "c.pt")


def test_head_from_another_model_is_refused(tmp_path, vit):
    other = GCDHead(32, K, hidden_dim=16)
    torch.save(
        {"model": {**prefixed(vit.state_dict(), "0."), **prefixed(other.state_dict(), "1.")}},
        tmp_path / "c.pt",
    )
    with pytest.raises(CheckpointError, match="32-d features but the backbone gives 64-d"):
        load_gcd_checkpoint(tmp_path / "c.pt")


FACTORY = """
import torch
from entangle.models.heads import GCDHead
from entangle.models.vit import VIT_CONFIGS, VisionTransformer

class Wrapped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = VisionTransformer(VIT_CONFIGS["vit-tiny-test"])
        self.feature_dim = 64

    def forward(self, x):
        return self.encoder(x)

def build():
    return Wrapped(), GCDHead(64, 6, hidden_dim=32, proj_dim=16)

def not_a_pair():
    return 3
"""


def test_model_factory_loads_an_unknown_layout(tmp_path, monkeypatch, vit, head, images):
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    state = {
        **prefixed(vit.state_dict(), "backbone.encoder."),
        **prefixed(head.state_dict(), "head."),
    }
    torch.save({"state_dict": state, "step": 10}, tmp_path / "mine.ckpt")
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_gcd_checkpoint(tmp_path / "mine.ckpt")
    loaded = load_gcd_checkpoint(tmp_path / "mine.ckpt", model_factory="my_models:build")
    assert loaded.format == "custom" and loaded.num_classes == K
    assert_same_model(loaded, vit, head, images)
    with pytest.raises(EntangleTypeError, match="must return"):
        load_gcd_checkpoint(tmp_path / "mine.ckpt", model_factory="my_models:not_a_pair")
    with pytest.raises(EntangleValueError, match="package.module:function"):
        load_gcd_checkpoint(tmp_path / "mine.ckpt", model_factory="my_models.build")


def test_loaded_state_is_independent_of_the_source_file_bytes(tmp_path, vit, head, images):
    """Loading twice from the same bytes gives identical, separately usable models."""
    buffer = io.BytesIO()
    torch.save({"model": nn.Sequential(vit, head).state_dict()}, buffer)
    path = tmp_path / "c.pt"
    path.write_bytes(buffer.getvalue())
    a, b = load_gcd_checkpoint(path), load_gcd_checkpoint(path)
    with torch.no_grad():
        next(a.backbone.parameters()).add_(1.0)
    assert_same_model(b, vit, head, images)


def test_a_full_disk_while_saving_is_one_clear_line(tmp_path, monkeypatch, vit):
    from entangle.errors import EntangleRuntimeError

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    save_checkpoint(tmp_path / "m.pt", vit, None)
    before = (tmp_path / "m.pt").read_bytes()
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(EntangleRuntimeError, match=r"cannot write .*m\.pt.*disk may be full"):
        save_checkpoint(tmp_path / "m.pt", vit, None)
    assert (tmp_path / "m.pt").read_bytes() == before  # the previous file is intact
    assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------------- size limits


def arch_checkpoint(vit, **config) -> dict:
    cfg = VIT_CONFIGS["vit-tiny-test"].to_dict() | config
    return {
        "entangle_checkpoint": 1,
        "backbone": vit.state_dict(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": cfg}}},
    }


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        ({"depth": 65536, "embed_dim": 65536, "num_heads": 1}, "ENTANGLE_MAX_MODEL_DEPTH=N"),
        ({"embed_dim": 65536, "num_heads": 1}, "ENTANGLE_MAX_MODEL_PARAMS=N"),
        ({"img_size": 65536, "patch_size": 65536}, "ENTANGLE_MAX_IMAGE_SIZE=N"),
        ({"img_size": 1024, "patch_size": 1}, r"1048577 tokens.*ENTANGLE_MAX_VIT_TOKENS=N"),
        ({"num_register_tokens": 65536}, "ENTANGLE_MAX_VIT_TOKENS=N"),
        ({"depth": 200}, "but the file's backbone holds"),
    ],
)
def test_an_oversized_meta_arch_is_refused_before_any_module_is_built(
    vit, config, phrase, monkeypatch
):
    """A 65536-block record took 69 s and 3.2 GB before refusing; now no block is built."""
    import entangle.checkpoints.rebuild as rebuild

    built = []
    monkeypatch.setattr(rebuild, "VisionTransformer", lambda cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match=phrase) as info:
        load_gcd_object(arch_checkpoint(vit, **config))
    assert "\n" not in str(info.value) and built == []


@pytest.mark.parametrize(
    "config",
    [
        dict(embed_dim=1024, depth=24, num_heads=16),  # ViT-L/16
        dict(img_size=518, patch_size=14, embed_dim=1536, depth=40, num_heads=24),  # ViT-g/14
        *[c.to_dict() for name, c in VIT_CONFIGS.items() if name != "vit-tiny-test"],
    ],
)
def test_real_vit_sizes_pass_the_limits(config):
    """ViT-L, ViT-g and every preset entangle builds stay under the default limits."""
    from entangle.checkpoints.rebuild import _check_vit_size, vit_weight_count

    cfg = ViTConfig(**config)
    _check_vit_size(cfg, None, "x", "meta.arch.backbone.config")
    with torch.device("meta"):
        actual = sum(p.numel() for p in VisionTransformer(cfg).parameters())
    assert 0.95 * actual < vit_weight_count(cfg) <= actual  # a tight lower bound


@pytest.mark.parametrize("backbone", ["vit", "digits"])
def test_one_key_cannot_ask_for_a_hundred_million_blocks(vit, backbone, monkeypatch):
    """Depth read off tensor names is 1 + the largest block index: one extra key named
    blocks.99999999.* asked for 10^8 blocks (20000 took 21 s before the strict load refused)."""
    from entangle.models.backbones import ResidualMLP

    model = vit if backbone == "vit" else ResidualMLP(in_dim=64, dim=16, depth=2)
    state = model.state_dict()
    state["blocks.99999999.fc1.weight"] = torch.zeros(1)
    obj = {"entangle_checkpoint": 1, "backbone": state, "head": None, "meta": {}}
    with pytest.raises(CheckpointError, match=r"100000000 blocks.*ENTANGLE_MAX_MODEL_DEPTH=N"):
        load_gcd_object(obj)
    monkeypatch.setenv("ENTANGLE_MAX_MODEL_DEPTH", "3")  # a real model at its limit loads
    del state["blocks.99999999.fc1.weight"]
    assert load_gcd_object(obj).backbone is not None


@functools.cache
def _tiny_vit_state() -> dict:
    return VisionTransformer(VIT_CONFIGS["vit-tiny-test"]).state_dict()


_FIELD_VALUES = st.one_of(
    st.integers(-2, 1 << 17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@settings(max_examples=30, deadline=None)
@given(
    config=st.dictionaries(
        st.sampled_from([f.name for f in dataclasses.fields(ViTConfig)] + ["factory"]),
        _FIELD_VALUES,
        max_size=6,
    )
)
def test_any_meta_arch_config_loads_or_is_a_checkpoint_error(config):
    """Whatever meta.arch.backbone.config holds, the outcome is a model or a CheckpointError
    (the CLI's one line, exit 2), reached without building past the limits."""
    obj = {
        "entangle_checkpoint": 1,
        "backbone": _tiny_vit_state(),
        "head": None,
        "meta": {"arch": {"backbone": {"kind": "vit", "config": config}}},
    }
    try:
        load_gcd_object(obj)
    except CheckpointError:
        pass
