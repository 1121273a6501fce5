"""Safe loading, format detection and strict round trips for every supported layout."""

from __future__ import annotations

import argparse
import io
import os
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from entangle.checkpoints import (
    CheckpointError,
    load_gcd_checkpoint,
    safe_load,
)
from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.models.heads import GCDHead
from tests.checkpoints.models import K, assert_same_model, prefixed

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


# ------------------------------------------------------------------------------- failures


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
