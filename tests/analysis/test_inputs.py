"""What analyze reads besides the checkpoint: the user's labeled split, feature files, subsets,
the head's classes checked against the data's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.analysis import load_inputs
from entangle.errors import EntangleValueError


def test_the_users_own_labeled_split_replaces_the_random_one(tmp_path):
    base = load_inputs("digits")
    old_rows = torch.nonzero(~base.novel).flatten()
    chosen = old_rows[::7][:40]
    split = tmp_path / "labeled.txt"
    split.write_text("# my labeled samples\n" + "\n".join(str(int(i)) for i in chosen) + "\n")
    data = load_inputs("digits", labeled_split=split)
    # before: only entangle's own random split (--labeled-fraction) could be analysed
    assert torch.equal(torch.nonzero(data.labeled).flatten(), chosen.sort().values)
    assert torch.equal(data.novel, base.novel) and torch.equal(data.labels, base.labels)


def test_labeled_split_by_file_name_and_its_errors(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for c in ("cat", "dog", "eel", "fox"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(root / c / f"{c}{i}.png")
    split = tmp_path / "split.txt"
    split.write_text("cat0.png\ncat/cat2.png\ndog1.png\n")
    data = load_inputs(f"imagefolder:{root}", labeled_split=split)
    names = [p.name for p in data.x.paths]
    assert sorted(names[i] for i in torch.nonzero(data.labeled).flatten()) == [
        "cat0.png",
        "cat2.png",
        "dog1.png",
    ]
    split.write_text("cat0.png\nwolf.png\n")
    with pytest.raises(EntangleValueError, match="'wolf.png' names no sample"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)
    split.write_text("eel0.png\n")  # eel is a novel class (the second half)
    with pytest.raises(EntangleValueError, match="its class is novel"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)
    split.write_text("99\n")
    with pytest.raises(EntangleValueError, match="outside the data's 12 samples"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)


def _feature_file(path, **arrays):
    """A features:FILE.npz of 12 samples, classes 0-3, labeled rows of classes 0-1."""
    labels = np.arange(12) % 4
    base = {
        "features": np.arange(24, dtype=np.float32).reshape(12, 2),
        "labels": labels,
        "labeled": (labels < 2) & (np.arange(12) < 6),
    }
    np.savez(path, **(base | arrays))
    return path


def test_a_feature_files_old_classes_come_from_novel_then_the_option_then_the_labels(tmp_path):
    from entangle.analysis.inputs import load_feature_file

    plain = load_feature_file(_feature_file(tmp_path / "a.npz"))
    assert plain.old_classes == [0, 1] and plain.class_names == ["0", "1", "2", "3"]
    assert torch.equal(plain.novel, torch.from_numpy(np.arange(12) % 4 >= 2))
    assert plain.features.dtype == torch.float32 and plain.logits is None and len(plain) == 12
    assert load_feature_file(tmp_path / "a.npz", old_classes="3").old_classes == [0, 1, 2]
    stored = _feature_file(tmp_path / "b.npz", old_classes=np.array([0, 1, 2]))
    assert load_feature_file(stored).old_classes == [0, 1, 2]
    novel = _feature_file(tmp_path / "c.npz", novel=np.arange(12) % 4 == 3)
    assert load_feature_file(novel).old_classes == [0, 1, 2]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"labels": np.arange(11) % 4}, "holds 12 feature rows"),
        ({"features": np.zeros(12, dtype=np.float32)}, "'features' must be 2-D"),
        ({"labels": -(np.arange(12) % 4)}, "non-negative integers"),
        ({"class_names": np.array(["a", "b"])}, "names 2 classes but labels go up to 3"),
        ({"novel": np.ones(12, dtype=bool)}, "both labeled and novel"),
    ],
)
def test_a_bad_feature_file_is_refused_saying_what_is_wrong(tmp_path, arrays, match):
    from entangle.analysis.inputs import load_feature_file

    with pytest.raises(EntangleValueError, match=match):
        load_feature_file(_feature_file(tmp_path / "x.npz", **arrays))
    with pytest.raises(EntangleValueError, match="no file at"):
        load_feature_file(tmp_path / "missing.npz")


def test_a_subset_keeps_the_rows_and_their_masks(tmp_path):
    from entangle.analysis.inputs import load_feature_file, subset

    data = load_feature_file(_feature_file(tmp_path / "a.npz", logits=np.eye(12, 4)))
    rows = torch.tensor([1, 4, 7])
    part = subset(data, rows)
    assert torch.equal(part.features, data.features[rows])
    assert torch.equal(part.logits, data.logits[rows])
    assert part.labels.tolist() == [1, 0, 3] and part.labeled.tolist() == [True, True, False]
    assert part.novel.tolist() == [False, False, True] and part.old_classes == [0, 1]
    digits = load_inputs("digits", max_samples=50)
    small = subset(digits, rows)
    assert torch.equal(small.x, digits.x[rows]) and torch.equal(small.novel, digits.novel[rows])


def test_the_heads_classes_are_checked_against_the_datas(tmp_path):
    from entangle.analysis.inputs import check_classes, load_feature_file
    from entangle.checkpoints import CheckpointError

    data = load_feature_file(_feature_file(tmp_path / "a.npz"))  # 4 classes, 2 old
    assert check_classes(None, data, "c.pt") == [] and check_classes(4, data, "c.pt") == []
    assert check_classes(6, data, "c.pt") == ["the head has K=6 clusters for 4 classes in the data"]
    with pytest.raises(
        CheckpointError, match=r"c.pt: the head has K=3 classes .* \(2 old, 2 novel"
    ):
        check_classes(3, data, "c.pt")


def test_samples_are_named_by_file_path_and_class_folder():
    from types import SimpleNamespace

    from entangle.analysis.inputs import sample_names

    data = SimpleNamespace(x=SimpleNamespace(paths=["/data/cat/a.png", "b.png"]))
    assert sample_names(data) == [["a.png", "/data/cat/a.png", "cat/a.png"], ["b.png", "b.png"]]
    assert sample_names(load_inputs("digits", max_samples=20)) is None  # in memory: indices only
