"""Self-supervised pretraining lowers its loss, keeps features useful, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.data.augment import DigitAugment
from entangle.data.datasets import load_source
from entangle.errors import EntangleValueError
from entangle.gcd.pretrain import pretrain_backbone
from entangle.models.backbones import build_backbone


@pytest.fixture(scope="module")
def digits():
    data = load_source("digits")
    return data.x[:600], data.labels[:600]


def _pretrain(images, seed=0, epochs=6, progress=None):
    torch.manual_seed(seed)
    bb = build_backbone("digits-mlp", dim=64, depth=2)
    losses = pretrain_backbone(
        bb,
        images,
        epochs=epochs,
        batch_size=100,
        lr=2e-3,
        seed=seed,
        device="cpu",
        augment=DigitAugment(),
        progress=progress,
    )
    return bb, losses


def _knn_accuracy(features, labels, k=5):
    """Leave-one-out cosine kNN (majority vote), computed directly."""
    z = torch.nn.functional.normalize(features, dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-2.0)
    neighbours = sim.topk(k, dim=1).indices
    votes = labels[neighbours]
    pred = torch.mode(votes, dim=1).values
    return float((pred == labels).float().mean())


def test_pretraining_lowers_loss_and_features_separate_digits(digits):
    images, labels = digits
    seen = []
    bb, losses = _pretrain(images, progress=lambda e, loss: seen.append((e, loss)))
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0]
    assert seen == list(enumerate(losses))
    bb.eval()
    with torch.no_grad():
        acc = _knn_accuracy(bb(images), labels)
    assert acc > 0.8  # chance is 0.1
    assert bb.training is False  # the previous mode is restored


def test_pretraining_is_deterministic_and_leaves_only_backbone_weights(digits):
    images, _ = digits
    a, la = _pretrain(images, seed=3, epochs=2)
    b, lb = _pretrain(images, seed=3, epochs=2)
    assert la == lb
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == build_backbone("digits-mlp", dim=64, depth=2).state_dict().keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c, _ = _pretrain(images, seed=4, epochs=2)
    assert not torch.equal(c.stem.weight, a.stem.weight)


def test_bad_arguments(digits):
    images, _ = digits
    bb = build_backbone("digits-mlp", dim=8, depth=1)
    with pytest.raises(EntangleValueError, match="batch_size >= 2"):
        pretrain_backbone(
            bb, images, epochs=1, batch_size=1, lr=1e-3, seed=0, device="cpu", augment=None
        )
