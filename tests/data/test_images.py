"""entangle.data.images: image files and uint8 arrays served as RGB PIL images."""

from __future__ import annotations

import numpy as np

from entangle.data.images import IMAGE_EXTENSIONS, ArrayImages, ImageFiles


def test_image_files_are_read_on_demand_as_rgb(tmp_path):
    from PIL import Image

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(gray, mode="L").save(tmp_path / "a.png")
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "b.bmp")
    files = ImageFiles([tmp_path / "a.png", tmp_path / "b.bmp"])
    assert len(files) == 2
    img = files[np.int64(0)]
    assert img.mode == "RGB" and img.size == (4, 3)
    assert np.asarray(img)[..., 1].tolist() == gray.tolist()
    assert files[1].size == (2, 2)
    assert ".png" in IMAGE_EXTENSIONS and ".bmp" in IMAGE_EXTENSIONS


def test_array_images_serve_each_row_as_an_image():
    array = np.random.default_rng(0).integers(0, 255, (3, 5, 4, 3), dtype=np.uint8)
    images = ArrayImages(array)
    assert len(images) == 3
    img = images[2]
    assert img.mode == "RGB" and img.size == (4, 5)
    assert np.array_equal(np.asarray(img), array[2])
