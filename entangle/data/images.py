"""Image-backed datasets: files read on demand, or a uint8 array, served as PIL images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageFiles(torch.utils.data.Dataset):
    """Image files read on demand as RGB PIL images (item ``i`` is ``paths[i]``)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        # lazy: PIL loads when a batch first asks for an image, not when a source is listed
        from PIL import Image

        with Image.open(self.paths[int(i)]) as img:
            return img.convert("RGB")


class ArrayImages(torch.utils.data.Dataset):
    """``[n, H, W, 3]`` uint8 array (e.g. torchvision's CIFAR ``.data``) served as PIL images."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):
        # lazy: PIL loads when a batch first asks for an image, not when a source is listed
        from PIL import Image

        return Image.fromarray(self.array[int(i)])
