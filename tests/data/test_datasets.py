"""load_source: the digits, synthetic and CIFAR sources as entangle.data.datasets loads them
(the split, sources, samplers, batches and augmentations have their own mirrored files)."""

from __future__ import annotations

import pytest
import torch

from entangle.data.datasets import load_source
from entangle.errors import EntangleValueError


def test_digits_default(digits):
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == torch.float32
    assert 0 <= float(digits.x.min()) and float(digits.x.max()) <= 1
    assert digits.num_classes == 10 and digits.input_kind == "digits"
    assert digits.old_classes == [0, 1, 2, 3, 4]
    assert torch.equal(digits.novel, digits.labels >= 5)
    for c in range(5):
        members = digits.labels == c
        assert int(digits.labeled[members].sum()) == round(0.5 * int(members.sum()))
    assert not digits.labeled[digits.novel].any()


def test_cifar_missing_copy_is_a_value_error(tmp_path):
    # the CIFAR pickles are read without torchvision (entangle.data.benchmarks)
    with pytest.raises(EntangleValueError, match=r"cifar-100-python/train"):
        load_source(f"cifar100:{tmp_path}")


def test_synthetic_source():
    pytest.importorskip("entangle.data.synthetic")
    data = load_source("synthetic", overlap=0.2, per_class=20, dim=16, seed=1)
    assert data.input_kind == "vector" and data.x.shape == (200, 16)
    assert data.x.dtype == torch.float32 and data.num_classes == 10
    assert data.old_classes == [0, 1, 2, 3, 4]
    assert torch.equal(data.novel, data.labels >= 5)
    assert int(data.labeled.sum()) == 50 and not data.labeled[data.novel].any()
    # the source's seed follows load_source's seed
    again = load_source("synthetic", overlap=0.2, per_class=20, dim=16, seed=1)
    other = load_source("synthetic", overlap=0.2, per_class=20, dim=16, seed=2)
    assert torch.equal(data.x, again.x) and not torch.equal(data.x, other.x)
    with pytest.raises(EntangleValueError, match="takes no options"):
        load_source("digits", overlap=0.3)


# ---------------------------------------------------------------- sampler


# ---------------------------------------------------------------- batches and augmentation
