"""The reference model as the EAGC authors train it: old-class head, fresh views each epoch."""

from __future__ import annotations

import dataclasses

import torch

from entangle.data.augment import default_augment
from entangle.gcd.setup import LabeledViews, ensure_reference, old_class_index, prepare
from entangle.gcd.train import TrainConfig

TINY = TrainConfig(
    data="synthetic",
    epochs=1,
    batch_size=64,
    pretrain_epochs=0,
    reference_epochs=2,
    device="cpu",
)


def test_labeled_views_are_fresh_every_pass_and_reproducible():
    data = prepare(TINY).data
    views = LabeledViews(data, 32, default_augment(data.input_kind), seed=3)
    first, second = list(views), list(views)
    assert len(first) == len(views) == -(-int(data.labeled.sum()) // 32)
    ids = [torch.cat([b[2] for b in p]).sort().values for p in (first, second)]
    want = torch.nonzero(data.labeled).flatten()
    assert torch.equal(ids[0], want) and torch.equal(ids[1], want)  # every labeled sample
    # the second epoch draws new views (the old code replayed one augmented list)
    assert not torch.equal(first[0][0][0], second[0][0][0])
    assert not torch.equal(first[0][0][0], first[0][0][1])  # two views of each sample
    again = list(LabeledViews(data, 32, default_augment(data.input_kind), seed=3))
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(first, again, strict=True))
    # labels are the reference head's outputs: the index among the old classes
    lut = old_class_index(data)
    for _views, labels, idx in first:
        assert torch.equal(labels, lut[data.labels[idx]])
        assert int(labels.min()) >= 0 and int(labels.max()) < len(data.old_classes)


def test_reference_head_is_over_the_old_classes_only_and_reloads(tmp_path):
    from entangle.checkpoints import save_checkpoint

    setup = prepare(TINY)
    epochs = []
    ref_b, ref_h = ensure_reference(TINY, setup, progress=lambda s, e, loss: epochs.append(e))
    assert epochs == [0, 1]  # reference_epochs
    n_old = len(setup.data.old_classes)
    assert ref_h.num_classes == n_old < setup.data.num_classes
    with torch.no_grad():
        assert ref_h(ref_b(setup.data.x[:5]))[1].shape == (5, n_old)
    trained = [
        k
        for k, v in ref_b.state_dict().items()
        if not torch.equal(v, setup.backbone.state_dict()[k])
    ]
    assert trained and all(not p.requires_grad for m in (ref_b, ref_h) for p in m.parameters())
    path = save_checkpoint(tmp_path / "ref.pt", ref_b, ref_h)
    loaded_b, loaded_h = ensure_reference(
        dataclasses.replace(TINY, reference=str(path)), prepare(TINY)
    )
    for a, b in ((ref_b, loaded_b), (ref_h, loaded_h)):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k


def test_trust_checkpoint_loads_a_reference_that_needs_code(tmp_path):
    """A reference saved with an argparse.Namespace (as DINO's checkpoints are): refused by
    name without --trust-checkpoint, loaded with it (issue 19: train had no such flag)."""
    import argparse

    import pytest

    from entangle.checkpoints import CheckpointError

    plain = prepare(TINY)
    backbone, head = plain.backbone, plain.head
    torch.manual_seed(5)
    for p in backbone.parameters():
        p.data.normal_()
    path = tmp_path / "ref.pt"
    state = {"backbone": backbone.state_dict(), "head": head.state_dict()}
    torch.save({**state, "args": argparse.Namespace(arch="vit_small")}, path)
    config = dataclasses.replace(TINY, reference=str(path), eagc=True)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*--trust-checkpoint"):
        ensure_reference(config, prepare(config))
    ref_backbone, _ = ensure_reference(config, prepare(config, trust_checkpoint=True))
    for name, value in backbone.state_dict().items():
        assert torch.equal(ref_backbone.state_dict()[name], value), name


def test_head_mlp_layers_puts_the_eagc_mlp_head_before_simgcds_head():
    from torch import nn

    from entangle.gcd.setup import reference_head
    from entangle.models.heads import GCDHead, ReLUMLP

    plain = prepare(TINY)
    setup = prepare(dataclasses.replace(TINY, head_mlp_layers=1))
    head, dim = setup.head, setup.backbone.feature_dim
    assert isinstance(head, nn.Sequential) and isinstance(head[0], ReLUMLP)
    assert isinstance(head[1], GCDHead) and head[1].config["nlayers"] == 3  # DINO head as now
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    # 1 MLP_Head layer (D -> D) + the DINO head's 3 projector layers + its classifier
    assert (
        len(linears) == 5
        and len([m for m in plain.head.modules() if isinstance(m, nn.Linear)]) == 4
    )
    assert head[0].mlp[0].weight.shape == (dim, dim)
    assert sorted(k for k in head.state_dict() if k.startswith("0.")) == [
        "0.mlp.0.bias",
        "0.mlp.0.weight",
    ]
    # the GCD head is the default run's draw; the reference keeps a bare GCD head
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            head[1].state_dict().values(), plain.head.state_dict().values(), strict=True
        )
    )
    assert type(reference_head(head, 3, 0)) is GCDHead
    feats = torch.randn(5, dim)
    proj, logits = head(feats)
    assert proj.shape == (5, head[1].config["proj_dim"]) and logits.shape == (
        5,
        setup.data.num_classes,
    )
