"""entangle.data.samplers: the balanced sampler's shares and coverage, SimGCD's weighted one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from entangle.data.datasets import load_source
from entangle.data.samplers import BalancedBatchSampler, WeightedGCDSampler, train_sampler
from entangle.errors import EntangleValueError
from tests.support import benchmark_trees as trees


def test_sampler_balances_and_covers(digits):
    sampler = BalancedBatchSampler(digits.labeled, 128, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(1797 / 128)
    for idx in batches:
        assert idx.shape == (128,) and idx.unique().numel() == 128
        assert int(digits.labeled[idx].sum()) == 64
    seen = torch.cat(batches)
    # the labeled pool (450 rows) is cycled: every labeled sample appears in the epoch
    assert set(torch.nonzero(digits.labeled).flatten().tolist()) <= set(seen.tolist())


def test_sampler_is_seeded_and_epoch_dependent(digits):
    a = BalancedBatchSampler(digits.labeled, 64, seed=5)
    b = BalancedBatchSampler(digits.labeled, 64, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    first = list(a)
    a.set_epoch(1)
    assert not torch.equal(first[0], next(iter(a)))
    b.set_epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_sampler_short_pool_is_topped_up_without_repeats():
    labeled = torch.tensor([True] * 3 + [False] * 20)
    for idx in BalancedBatchSampler(labeled, 10, labeled_share=0.5, seed=0):
        assert idx.unique().numel() == 10
        assert int(labeled[idx].sum()) == 3  # only 3 labeled rows exist
    for idx in BalancedBatchSampler(torch.zeros(5, dtype=torch.bool), 8):
        assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]


def test_weighted_sampler_weights_and_ranks():
    labeled = torch.tensor([True] * 30 + [False] * 90)
    s = WeightedGCDSampler(labeled, 16, seed=1)
    # SimGCD train.py: 1 per labeled, label_len / unlabelled_len per unlabeled; n draws
    assert s.weights[:30].eq(1).all() and torch.allclose(
        s.weights[30:], torch.tensor(30 / 90.0).double()
    )
    assert len(s) == 120 // 16 and all(b.numel() == 16 for b in s)
    s.set_epoch(3)
    first, again = torch.cat(list(s)), torch.cat(list(s))
    assert torch.equal(first, again)
    share = np.mean(
        [
            labeled[torch.cat(list(WeightedGCDSampler(labeled, 8, seed=k)))].float().mean()
            for k in range(40)
        ]
    )
    assert abs(share - 0.5) < 0.05  # equal weight mass: half the draws labeled on average
    r1 = WeightedGCDSampler(labeled, 8, rank=1, world_size=2)
    assert torch.equal(r1.weights, s.weights[1::2]) and len(r1) == 60 // 8
    assert all((b % 2 == 1).all() for b in r1)


def test_train_sampler_picks_by_source(tmp_path):
    data = load_source(f"cifar10:{trees.cifar_tree(tmp_path, 'cifar10')}")
    assert isinstance(train_sampler(data, 8), WeightedGCDSampler)
    data.benchmark = None  # any other source keeps entangle's balanced sampler
    assert isinstance(train_sampler(data, 8), BalancedBatchSampler)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"labeled": torch.zeros(0, dtype=torch.bool)}, "non-empty 1-D mask"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"labeled_share": 1.5}, r"labeled_share must be in \[0, 1\]"),
    ],
)
def test_balanced_sampler_refusals(kw, match):
    args = {"labeled": torch.tensor([True, False]), "batch_size": 2} | kw
    with pytest.raises(EntangleValueError, match=match):
        BalancedBatchSampler(args.pop("labeled"), args.pop("batch_size"), **args)


def test_weighted_sampler_refusals_name_the_fix():
    with pytest.raises(EntangleValueError, match="0 labeled of 3"):
        WeightedGCDSampler(torch.zeros(3, dtype=torch.bool), 1)
    with pytest.raises(EntangleValueError, match="0 <= rank < world_size"):
        WeightedGCDSampler(torch.tensor([True, False]), 1, rank=2, world_size=2)
    with pytest.raises(EntangleValueError, match="lower --batch-size"):
        WeightedGCDSampler(torch.tensor([True, False, False]), 4)
