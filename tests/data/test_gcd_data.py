"""entangle.data.gcd_data: GCDSplit's labeled share per old class, its seed, its checks."""

from __future__ import annotations

import pytest
import torch

from entangle.data.datasets import load_source
from entangle.data.gcd_data import GCDData, GCDSplit
from entangle.errors import EntangleValueError


def test_split_labels_a_fraction_of_each_old_class():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 5 + [3] * 4)
    labeled, novel = GCDSplit([0, 1], labeled_fraction=0.5, seed=3).masks(labels)
    assert novel.tolist() == [False] * 17 + [True] * 9
    assert int(labeled[labels == 0].sum()) == 5
    assert int(labeled[labels == 1].sum()) == round(3.5)
    assert not labeled[novel].any()


def test_split_indices_partition_and_seed():
    labels = torch.arange(40) % 4
    split = GCDSplit([1, 3], labeled_fraction=0.4, seed=1)
    lab, unl = split.labeled_indices(labels), split.unlabeled_indices(labels)
    assert sorted(lab.tolist() + unl.tolist()) == list(range(40))
    assert torch.equal(lab, GCDSplit([3, 1], 0.4, seed=1).labeled_indices(labels))
    assert not torch.equal(lab, GCDSplit([1, 3], 0.4, seed=2).labeled_indices(labels))
    assert torch.equal(GCDSplit([1], 1.0).masks(labels)[0], labels == 1)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_split_rejects_fraction_outside_unit_interval(fraction):
    with pytest.raises(EntangleValueError, match=r"\(0, 1\]"):
        GCDSplit([0], labeled_fraction=fraction)
    with pytest.raises(EntangleValueError, match=r"\(0, 1\]"):
        load_source("digits", labeled_fraction=fraction)


def test_gcd_data_counts_classes_and_knows_in_memory_data():
    labels = torch.tensor([0, 1, 2, 2])
    data = GCDData(
        torch.zeros(4, 3), labels, labels == 0, labels == 2, [0, 1], ["a", "b", "c"], "vector"
    )
    assert (data.num_classes, len(data), data.in_memory) == (3, 4, True)
    images = GCDData([None] * 4, labels, labels == 0, labels == 2, [0, 1], list("abc"), "image")
    assert not images.in_memory and images.image_size == 224


def test_split_keeps_at_least_one_labeled_sample_per_old_class_and_skips_absent_ones():
    labels = torch.tensor([0, 1, 1, 1, 3])
    labeled, novel = GCDSplit([0, 1, 2], labeled_fraction=0.1).masks(labels)
    assert int(labeled[1:4].sum()) == 1  # max(1, round(0.1 * 3))
    assert bool(labeled[0]) and int(labeled.sum()) == 2 and novel.tolist() == [False] * 4 + [True]
    assert GCDSplit([2.0, 1, 1]).old_classes == (1, 2)
