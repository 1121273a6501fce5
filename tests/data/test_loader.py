"""Image batches made in DataLoader workers equal the main process's; torchvision's transforms
on a benchmark layout (CUB)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from entangle.data.augment import gcd_transform
from entangle.data.datasets import (
    epoch_batches,
    eval_batches,
    eval_inputs,
    load_source,
    train_sampler,
)
from tests.support import benchmark_trees as trees

pytestmark = pytest.mark.extras  # torchvision's transforms
pytest.importorskip("torchvision")


def noise_folder(root, classes: int = 4, per_class: int = 6, px: int = 24):
    """An image folder of random-noise JPEGs (so crops, flips and jitter all change pixels)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (px, px + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{j}.jpg")
    return root


def test_worker_batches_equal_main_process_batches(tmp_path):
    data = load_source(f"imagefolder:{noise_folder(tmp_path / 'imgs')}", old_classes=2)
    augment = gcd_transform("train", image_size=16)
    sampler = train_sampler(data, 5, seed=1)
    rows = list(sampler)

    def epoch(workers):
        g = torch.Generator().manual_seed(9)
        return list(epoch_batches(data, rows, augment, g, workers=workers))

    main, workers = epoch(0), epoch(2)
    assert len(main) == len(workers) == len(rows) >= 4
    for a, b in zip(main, workers, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # the comparison can fail: the two views of a batch differ, and so do two epochs' seeds
    assert not torch.equal(main[0]["views"][:5], main[0]["views"][5:])
    other = list(epoch_batches(data, rows, augment, torch.Generator().manual_seed(10)))
    assert not torch.equal(other[0]["views"], main[0]["views"])


def test_eval_batches_in_workers_equal_main_process_batches(tmp_path):
    data = load_source(f"imagefolder:{noise_folder(tmp_path / 'imgs')}", old_classes=2)
    transform = gcd_transform("test", image_size=16)
    main = list(eval_batches(data, 5, transform))
    workers = list(eval_batches(data, 5, transform, workers=2))
    assert [len(b) for b in main] == [5, 5, 5, 5, 4] == [len(b) for b in workers]
    for a, b in zip(main, workers, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(main), eval_inputs(data, range(24), transform))


def test_train_records_identical_with_workers_0_and_2(tmp_path):
    from entangle.gcd.train import WALL_CLOCK_KEYS, TrainConfig, prepare, train
    from entangle.runs.directory import RunReader

    config = TrainConfig(
        data=f"imagefolder:{noise_folder(tmp_path / 'imgs', per_class=4, px=20)}",
        model="vit-tiny-test",
        epochs=1,
        batch_size=6,
        probeset_size=16,
        probeset_every=2,
        soc_k=2,
        attribution=0,
        device="cpu",
        save_features=False,
        workers=0,
        image_size=32,
    )
    setup = prepare(config)
    assert setup.data.image_size == 32
    for workers in (0, 2):
        train(dataclasses.replace(config, workers=workers), tmp_path / f"w{workers}", setup)
    a, b = (RunReader(tmp_path / f"w{w}") for w in (0, 2))

    def numbers(records):
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in records]

    assert len(a.steps) >= 2 and numbers(a.steps) == numbers(b.steps)
    assert numbers(a.epochs) == numbers(b.epochs)
    assert a.config["workers"] == 0 and b.config["workers"] == 2
    assert a.config["image_size"] == 32
    assert eval_inputs(setup.data, [0, 1]).shape == (2, 3, 32, 32)  # evaluation at 32 px too


def test_torchvision_transforms_on_cub_layout(tmp_path):
    root = tmp_path / "cub"
    trees.cub_tree(root, real=True)  # class 151's images are real JPEGs (12 x 10 px)
    data = load_source(f"cub:{root}")
    real = [i for i in range(len(data)) if "151.Bird" in str(data.x.paths[i])]
    assert real
    test = eval_inputs(data, real[:2], gcd_transform("test", image_size=32))
    assert test.shape == (2, 3, 32, 32) and test.dtype == torch.float32
    # ImageNet normalisation of a flat grey image: every channel constant, (90/255 - mean)/std
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    want = (90 / 255 - mean) / std
    torch.testing.assert_close(test[0].mean((1, 2)), want, atol=2e-2, rtol=0)
    train_view = gcd_transform("train", image_size=32)(data.x[real[0]])
    assert train_view.shape == (3, 32, 32)
