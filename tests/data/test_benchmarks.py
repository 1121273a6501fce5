"""Benchmark readers: splits and class maps against the public code's procedure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.data import class_splits as cs
from entangle.data.benchmarks import read_benchmark
from entangle.data.datasets import load_source
from tests.support import benchmark_trees as trees


def simgcd_labeled_rows(old_rows: list) -> set:
    """SimGCD data/data_utils.py subsample_instances, as written there (prop 0.5)."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002 - the public code's global-generator calls, on purpose
    size = (int(0.5 * len(old_rows)),)
    idx = np.random.choice(range(len(old_rows)), replace=False, size=size)  # noqa: NPY002
    np.random.set_state(state)  # noqa: NPY002
    return {old_rows[i] for i in idx}


def test_cub_split_matches_simgcd(tmp_path):
    root = trees.cub_tree(tmp_path)
    split = read_benchmark("cub", root)
    # images.txt order, training rows (2 per class), 0-based class = label - 1
    lines = (root / "CUB_200_2011" / "images.txt").read_text().split("\n")[:-1]
    paths = [ln.split(" ")[1] for ln in lines]
    train = [p for i, p in enumerate(paths) if i % 3 < 2]
    assert split.train_items == train and split.test_items == paths[2::3]
    known = set(cs.CUB_KNOWN)
    old_rows = [p for p in train if int(p[:3]) - 1 in known]
    assert set(np.asarray(train)[split.labeled]) == simgcd_labeled_rows(old_rows)
    assert split.new_classes == cs.CUB_UNKNOWN_HARD + cs.CUB_UNKNOWN_MEDIUM + cs.CUB_UNKNOWN_EASY
    counts = split.counts()["parts"]
    assert counts == {"labeled": 100, "unlabeled": 300, "test": 200}


def test_cub_targets_put_old_classes_first(tmp_path):
    data = load_source(f"cub:{trees.cub_tree(tmp_path)}")
    paths = data.benchmark.train_items
    # class 151 (id 150) is the first known class -> target 0; id 29 is the first Hard -> 100
    assert {int(data.labels[i]) for i, p in enumerate(paths) if p.startswith("151.")} == {0}
    assert {int(data.labels[i]) for i, p in enumerate(paths) if p.startswith("030.")} == {100}
    assert data.old_classes == list(range(100)) and data.class_names[0] == "151.Bird_151"
    assert data.novel.tolist() == (data.labels >= 100).tolist()
    assert not data.labeled[data.novel].any() and int(data.labeled.sum()) == 100


def test_cub_loads_images_with_pil(tmp_path):
    data = load_source(f"cub:{trees.cub_tree(tmp_path, real=True)}")
    row = data.benchmark.train_items.index("151.Bird_151/Bird_151_0000_451.jpg")
    assert data.x[row].size == (10, 12) and data.x[row].mode == "RGB"


def test_aircraft_sorts_variant_names(tmp_path):
    split = read_benchmark("aircraft", trees.aircraft_tree(tmp_path))
    assert split.class_names == sorted(trees.aircraft_variants())
    # first listed variant "Model 00-A" sorts first: its images carry id 0
    first = [i for i, p in enumerate(split.train_items) if p in ("1000001.jpg", "1000002.jpg")]
    assert split.train_labels[first].tolist() == [0, 0]
    assert split.new_classes[:3] == (6, 7, 8)  # aircraft_osr_splits.pkl unknown Hard
    assert split.counts()["parts"] == {"labeled": 50, "unlabeled": 150, "test": 100}


def test_scars_reads_devkit_mat(tmp_path):
    split = read_benchmark("scars", trees.scars_tree(tmp_path))
    assert split.train_items[:2] == ["cars_train/00001.jpg", "cars_train/00002.jpg"]
    assert split.train_labels[:3].tolist() == [0, 1, 2] and split.train_labels[196] == 0
    old_rows = [i for i, y in enumerate(split.train_labels) if y in set(cs.SCARS_KNOWN)]
    assert set(np.flatnonzero(split.labeled)) == simgcd_labeled_rows(old_rows)
    assert split.counts()["parts"] == {"labeled": 98, "unlabeled": 294, "test": 196}


@pytest.mark.parametrize(
    ("name", "n_old", "parts"),
    [
        ("cifar10", 5, {"labeled": 25, "unlabeled": 75, "test": 10}),
        ("cifar100", 80, {"labeled": 80, "unlabeled": 120, "test": 100}),
    ],
)
def test_cifar_pickles(tmp_path, name, n_old, parts):
    split = read_benchmark(name, trees.cifar_tree(tmp_path, name))
    assert split.old_classes == tuple(range(n_old)) and split.counts()["parts"] == parts
    old_rows = [i for i, y in enumerate(split.train_labels) if y < n_old]
    assert set(np.flatnonzero(split.labeled)) == simgcd_labeled_rows(old_rows)
    assert split.arrays[0].shape == (len(split.train_items), 32, 32, 3)
    data = load_source(f"{name}:{tmp_path}")
    assert data.x[0].size == (32, 32)


def test_imagenet100_and_1k(tmp_path):
    root = trees.imagenet_tree(tmp_path)
    split = read_benchmark("imagenet100", root)
    assert split.class_names[:2] == ["n00000001", "n00000014"]  # classes 1 and 14 of 1000
    assert split.counts()["parts"] == {"labeled": 50, "unlabeled": 150, "test": 100}
    assert split.train_items[0] == "train/n00000001/n00000001_0.JPEG"
    full = read_benchmark("imagenet1k", root)
    assert full.counts()["parts"] == {"labeled": 500, "unlabeled": 1500, "test": 1000}


def test_herbarium_uses_string_sorted_folders(tmp_path):
    split = read_benchmark("herbarium19", trees.herbarium_tree(tmp_path))
    # ImageFolder order: "0", "1", "10", "100", ... so id 2 is folder "10"
    assert split.class_names[:4] == ["0", "1", "10", "100"]
    assert split.counts()["parts"] == {"labeled": 341, "unlabeled": 1025, "test": 683}
    # old class ids index that order (herbarium_19_class_splits.pkl 'Old' starts 113, 378, ...)
    assert [split.class_names[c] for c in split.old_classes[:2]] == ["20", "439"]


def test_splits_cli_json_and_table(tmp_path):
    root = trees.aircraft_tree(tmp_path)
    out = CliRunner().invoke(app, ["splits", f"aircraft:{root}", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert list(doc) == ["dataset", "old_classes", "new_classes", "labeled", "unlabeled", "test"]
    assert len(doc["old_classes"]) == 50 and len(doc["labeled"]) == 50
    assert set(doc["labeled"]).isdisjoint(doc["unlabeled"]) and doc["test"][0] == "1000003.jpg"
    table = CliRunner().invoke(app, ["splits", f"aircraft:{root}"])
    assert "labeled 50, unlabeled 150" in table.output
    bad = CliRunner().invoke(app, ["splits", f"cub:{tmp_path / 'none'}"])
    assert bad.exit_code != 0
