"""Benchmark readers: splits, class maps and the sampler against the public code's procedure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.data import class_splits as cs
from entangle.data.benchmarks import read_benchmark
from entangle.data.datasets import (
    BalancedBatchSampler,
    WeightedGCDSampler,
    load_source,
    train_sampler,
)
from entangle.errors import EntangleValueError
from tests.support import benchmark_trees as trees

# CVMI-Lab/SimGCD data/ssb_splits/*.pkl, read with pickle.load: list lengths, the first ids
# and the sums of the lists (a typo anywhere in class_splits.py changes a sum)
SSB = {
    "CUB": {"known": (100, (150, 70, 34, 178, 199), 10154), "hard": 34, "medium": 34, "easy": 32},
    "AIRCRAFT": {"known": (50, (0, 1, 2, 3, 4), 2066), "hard": 13, "medium": 17, "easy": 20},
    "SCARS": {"known": (98, (1, 11, 25, 38, 46), 12244), "hard": 7, "medium": 15, "easy": 76},
}
# herbarium_19_class_splits.pkl: 341 'Old' (first 113, 378, 303, 504, 301; sum 116254), 342 'New'
HERB_OLD = (341, (113, 378, 303, 504, 301), 116254)
# SimGCD data/imagenet.py: np.random.seed(0); np.sort(np.random.choice(range(1000), 100, False))
IMAGENET100_FIRST = (1, 14, 27, 31, 45, 55, 77, 103, 108, 141)


def simgcd_labeled_rows(old_rows: list) -> set:
    """SimGCD data/data_utils.py subsample_instances, as written there (prop 0.5)."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002 - the public code's global-generator calls, on purpose
    size = (int(0.5 * len(old_rows)),)
    idx = np.random.choice(range(len(old_rows)), replace=False, size=size)  # noqa: NPY002
    np.random.set_state(state)  # noqa: NPY002
    return {old_rows[i] for i in idx}


def test_class_lists_are_the_ssb_pickles():
    for prefix, want in SSB.items():
        known = getattr(cs, f"{prefix}_KNOWN")
        assert (len(known), known[:5], sum(known)) == want["known"]
        for part in ("hard", "medium", "easy"):
            assert len(getattr(cs, f"{prefix}_UNKNOWN_{part.upper()}")) == want[part]
    old = cs.HERBARIUM19_OLD
    assert (len(old), old[:5], sum(old)) == HERB_OLD and len(cs.HERBARIUM19_NEW) == 342
    assert set(old).isdisjoint(cs.HERBARIUM19_NEW) and set(old) | set(cs.HERBARIUM19_NEW) == set(
        range(683)
    )
    assert cs.IMAGENET100_CLASSES[:10] == IMAGENET100_FIRST


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
