"""entangle.data.benchmark_layouts: each benchmark's files read, and a missing or bad one named."""

from __future__ import annotations

import pytest

from entangle.data.benchmark_layouts import bad_layout, read_cub
from entangle.data.benchmarks import read_benchmark
from entangle.data.datasets import load_source
from entangle.errors import EntangleValueError
from tests.support import benchmark_trees as trees


def test_herbarium_kaggle_json_layout_is_named_not_read(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metadata.json").write_text("{}")
    with pytest.raises(EntangleValueError, match=r"Kaggle's original layout.*small-train/"):
        read_benchmark("herbarium19", tmp_path)


def test_missing_and_malformed_files_say_which(tmp_path):
    with pytest.raises(EntangleValueError, match=r"images\.txt.*CUB_200_2011/\{images\.txt"):
        read_benchmark("cub", tmp_path)
    root = trees.cub_tree(tmp_path / "c")
    (root / "CUB_200_2011" / "image_class_labels.txt").write_text("1 x\n")
    with pytest.raises(EntangleValueError, match="lacks a class|not an integer"):
        read_benchmark("cub", root)
    bad = tmp_path / "s" / "devkit"
    bad.mkdir(parents=True)
    (bad / "cars_train_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(EntangleValueError, match="cars_train_annos.mat"):
        read_benchmark("scars", tmp_path / "s")
    with pytest.raises(EntangleValueError, match="published class split"):
        load_source(f"cub:{root}", old_classes="5")


def test_read_cub_gives_images_order_train_and_test_parts_and_class_names(tmp_path):
    root = trees.cub_tree(tmp_path, train=2, test=1)
    image_dir, names, (train, ytrain), (test, ytest), old, new = read_cub(root)
    assert image_dir == root / "CUB_200_2011" / "images"
    assert (len(train), len(test)) == (400, 200) and ytrain[:3] == [0, 0, 1]
    assert train[0] == "001.Bird_1/Bird_1_0000_1.jpg" and ytest[0] == 0
    assert names[0] == "001.Bird_1" and len(names) == 200
    assert len(old) == 100 and len(new) == 100 and set(old).isdisjoint(new)


def test_bad_layout_says_what_was_expected():
    error = bad_layout("cifar10", "missing", "/x/y")
    assert isinstance(error, EntangleValueError)
    assert str(error) == (
        "cifar10: missing: /x/y; expected layout ROOT/cifar-10-batches-py/{data_batch_1..5, "
        "test_batch, batches.meta} (point cifar10:ROOT at its root)"
    )


def test_a_short_metadata_line_is_named_by_its_number(tmp_path):
    root = trees.cub_tree(tmp_path)
    (root / "CUB_200_2011" / "train_test_split.txt").write_text("1 1\n2\n")
    with pytest.raises(EntangleValueError, match="line 2 does not have 2 space-separated"):
        read_cub(root)
