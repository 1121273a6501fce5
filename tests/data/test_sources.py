"""entangle.data.sources: old-class specs, the image-folder source, and unknown sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.data.datasets import eval_inputs, load_source, make_batch
from entangle.data.sources import parse_old_classes
from entangle.errors import EntangleValueError


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


def test_parse_old_classes_by_count_name_index_or_default():
    names = ["cat", "dog", "emu", "fox"]
    assert parse_old_classes(None, names, [0, 1]) == [0, 1]
    assert parse_old_classes(2, names, [3]) == [0, 1]
    assert parse_old_classes("emu,0", names, [3]) == [0, 2]
    assert parse_old_classes(["dog", 3], names, [0]) == [1, 3]
    with pytest.raises(EntangleValueError, match="'yak' is not in the data"):
        parse_old_classes("yak", names, [0])
