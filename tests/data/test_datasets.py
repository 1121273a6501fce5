"""GCD split, sources, balanced sampler, two-view batches, augmentations."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from entangle.data.augment import DigitAugment, FeatureNoise, default_augment, gcd_transform
from entangle.data.datasets import (
    BalancedBatchSampler,
    GCDSplit,
    eval_inputs,
    load_source,
    make_batch,
)
from entangle.errors import EntangleError, EntangleValueError

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


# ---------------------------------------------------------------- split


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


# ---------------------------------------------------------------- sources


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


@pytest.mark.parametrize(
    "spec, expected",
    [(3, [0, 1, 2]), ("3", [0, 1, 2]), ("7,2", [2, 7]), ("9,", [9]), ([1, "8"], [1, 8])],
)
def test_old_class_specs(spec, expected):
    assert load_source("digits", old_classes=spec).old_classes == expected


def test_old_classes_from_file(tmp_path):
    f = tmp_path / "old.txt"
    f.write_text("# known digits\n6\n\n1\n")
    data = load_source("digits", old_classes=str(f))
    assert data.old_classes == [1, 6]
    assert torch.equal(data.novel, ~torch.isin(data.labels, torch.tensor([1, 6])))


def test_missing_old_class_lists_available():
    with pytest.raises(EntangleValueError, match=r"'eleven' is not in the data.*0, 1, 2"):
        load_source("digits", old_classes="1,eleven")
    with pytest.raises(EntangleValueError, match="not in the data"):
        load_source("digits", old_classes=[12])
    with pytest.raises(EntangleValueError, match="between 1 and 9"):
        load_source("digits", old_classes=10)


def test_unknown_source_lists_valid_ones():
    with pytest.raises(EntangleValueError, match=r"unknown data source 'mnist'.*digits.*synthetic"):
        load_source("mnist")


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in (("cat", 3), ("dog", 2), ("emu", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            arr = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_source(f"imagefolder:{tmp_path}", old_classes="dog")
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert data.old_classes == [1] and data.input_kind == "image"
    assert data.labeled.sum() == 1 and data.novel.tolist() == [True] * 3 + [False] * 2 + [True] * 2
    img = data.x[3]
    assert img.size == (5, 6) and img.mode == "RGB"
    # default old classes: the first half
    assert load_source(f"imagefolder:{tmp_path}").old_classes == [0, 1]

    def to_tensor(im):
        return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)

    batch = make_batch(data, [0, 3], to_tensor, torch.Generator().manual_seed(0))
    assert batch["views"].shape == (4, 3, 6, 5)
    assert torch.equal(batch["views"][:2], batch["views"][2:])  # deterministic transform
    assert eval_inputs(data, [0, 3], to_tensor).shape == (2, 3, 6, 5)


def test_imagefolder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(EntangleValueError, match="no images under"):
        load_source(f"imagefolder:{tmp_path}")
    with pytest.raises(EntangleValueError, match="not a directory"):
        load_source(f"imagefolder:{tmp_path / 'missing'}")


@pytest.mark.skipif(HAS_TORCHVISION, reason="checks the message shown without torchvision")
def test_transform_without_torchvision_says_what_to_install():
    with pytest.raises(EntangleError, match=r"entangle-gcd\[vit\]"):
        gcd_transform("train")


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


# ---------------------------------------------------------------- batches and augmentation


def test_make_batch_layout(digits):
    idx = torch.tensor([0, 5, 700, 1796])
    batch = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(0))
    assert batch["views"].shape == (8, 1, 8, 8)
    assert torch.equal(batch["labels"], digits.labels[idx])
    assert torch.equal(batch["labeled"], digits.labeled[idx])
    assert torch.equal(batch["novel"], digits.novel[idx])
    assert torch.equal(batch["index"], idx)
    assert not torch.equal(batch["views"][:4], batch["views"][4:])
    # without shifts, both views stay close to their own sample, in the given order
    gentle = DigitAugment(max_shift=0, contrast=0.2, noise=0.02)
    views = make_batch(digits, idx, gentle, torch.Generator().manual_seed(0))["views"]
    for v in (views[:4], views[4:]):
        corr = [np.corrcoef(v[i].flatten(), digits.x[j].flatten())[0, 1] for i, j in enumerate(idx)]
        assert min(corr) > 0.9


def test_make_batch_is_seeded(digits):
    idx = torch.arange(10)
    a = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(1))["views"]
    b = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(1))["views"]
    c = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(2))["views"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_digit_shift_moves_pixels_by_at_most_one():
    img = torch.zeros(200, 1, 8, 8)
    img[:, 0, 3, 4] = 1.0
    out = DigitAugment(max_shift=1, contrast=0.0, noise=0.0)(img, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(200))  # interior pixel never lost
    pos = torch.nonzero(out[:, 0])[:, 1:]
    offsets = pos - torch.tensor([3, 4])
    assert offsets.abs().max() == 1
    assert len({tuple(o) for o in offsets.tolist()}) == 9  # all 9 shifts occur


def test_digit_contrast_and_noise():
    img = torch.rand(64, 1, 8, 8) * 0.5 + 0.25
    g = torch.Generator().manual_seed(0)
    out = DigitAugment(max_shift=0, contrast=0.3, noise=0.0)(img, g)
    # contrast keeps each image's mean and scales deviations by one factor in [0.7, 1.3]
    torch.testing.assert_close(out.mean(dim=(2, 3)), img.mean(dim=(2, 3)))
    ratio = (out - out.mean(dim=(2, 3), keepdim=True)) / (img - img.mean(dim=(2, 3), keepdim=True))
    assert ratio.min() >= 0.7 - 1e-5 and ratio.max() <= 1.3 + 1e-5
    noisy = DigitAugment(max_shift=0, contrast=0.0, noise=0.05)(img, g)
    assert 0.04 < float((noisy - img).std()) < 0.06
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1


def test_feature_noise():
    x = torch.zeros(1000, 8)
    out = FeatureNoise(0.1)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and abs(float(out.std()) - 0.1) < 0.01


def test_default_augment():
    assert isinstance(default_augment("digits"), DigitAugment)
    assert isinstance(default_augment("vector", std=0.2), FeatureNoise)
    with pytest.raises(EntangleValueError, match="no default augmentation"):
        default_augment("audio")
