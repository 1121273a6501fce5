"""Shared starting weights: the variants of one seed start from one stored setup."""

from __future__ import annotations

import pytest
import torch

from entangle.ablation import parse_grid, run_grid
from entangle.runs.directory import RunReader
from tests.ablation.tiny import TINY


def test_variants_of_one_seed_start_from_identical_weights(tmp_path):
    base = TINY | {"pretrain_epochs": 1, "data": "digits"}
    variants = ["baseline", "baseline-reference", "aga"]
    spec = parse_grid({"base": base, "grid": {"variant": variants, "seed": [3]}})
    run = run_grid(spec, tmp_path / "g", report=False)
    assert run.ok
    setups = sorted((tmp_path / "g" / "setups").glob("*.pt"))
    # one pretrained setup for the seed, one reference model for the variants that need it
    assert len(setups) == 2 and sum(".reference" in p.name for p in setups) == 1
    state = torch.load([p for p in setups if ".reference" not in p.name][0], weights_only=True)
    from entangle.gcd.train import TrainConfig, prepare

    fresh = prepare(TrainConfig(**base | {"seed": 3}))
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(state["backbone"][key], value), key
    # the first probed step shows the start: the baseline from the pretrained weights, the
    # other two from the reference model (EAGC is the identity in the forward pass)
    first = {
        c.settings["variant"]: RunReader(tmp_path / "g" / "cells" / c.name).steps[0]
        for c in spec.cells()
    }
    sup = {v: s["losses"]["sup"] for v, s in first.items()}
    assert sup["baseline-reference"] == pytest.approx(sup["aga"], rel=1e-6)
    assert abs(sup["baseline"] - sup["aga"]) > 1e-3
    starts = {c.settings["variant"]: c.config.start_weights() for c in spec.cells()}
    assert starts == {
        "baseline": "pretrained",
        "baseline-reference": "reference",
        "aga": "reference",
    }


def test_setup_keys_follow_the_setup_fields_only():
    from dataclasses import replace

    from entangle.ablation.setups import reference_key, setup_key
    from entangle.gcd.train import TrainConfig

    base = TrainConfig(data="synthetic", device="cpu")
    # training settings that do not touch the split, the backbone or the head: same weights
    assert setup_key(replace(base, lr=0.5, epochs=9, eagc=True)) == setup_key(base)
    assert setup_key(replace(base, seed=1)) != setup_key(base)
    assert setup_key(replace(base, old_classes=3)) != setup_key(base)
    # the reference model's training settings change its key only
    longer = replace(base, reference_epochs=base.reference_epochs + 1)
    assert setup_key(longer) == setup_key(base)
    assert reference_key(longer) != reference_key(base) != setup_key(base)
    assert len(setup_key(base)) == 16 and int(setup_key(base), 16) >= 0


def test_a_stored_setup_is_loaded_not_recomputed(tmp_path):
    """Planted: the stored backbone's weights are changed on disk; the next cell loads them."""
    from entangle.ablation.setups import cached_setup, setup_key
    from entangle.gcd.train import TrainConfig

    config = TrainConfig(data="synthetic", pretrain_epochs=0, device="cpu")
    first = cached_setup(config, tmp_path)
    path = tmp_path / f"{setup_key(config)}.pt"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == [path.name]
    state = torch.load(path, weights_only=True)
    key = next(iter(state["backbone"]))
    state["backbone"][key] = torch.full_like(state["backbone"][key], 0.25)
    torch.save(state, path)
    second = cached_setup(config, tmp_path)
    assert torch.equal(second.backbone.state_dict()[key], state["backbone"][key])
    assert not torch.equal(first.backbone.state_dict()[key], state["backbone"][key])
    assert second.reference is None  # a baseline cell needs no reference model


def test_file_lock_creates_its_folder(tmp_path):
    from entangle.ablation.setups import file_lock

    with file_lock(tmp_path / "deep" / "er" / "k.lock"):
        assert (tmp_path / "deep" / "er").is_dir()
