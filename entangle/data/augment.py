"""Augmentations that make the two views of a GCD batch.

Two kinds live here:

- batched tensor augmentations for the in-memory sources (``DigitAugment`` for 8x8 digits,
  ``FeatureNoise`` for the synthetic feature vectors): ``augment(x, generator) -> x'`` on a whole
  batch at once, every random number drawn from the ``torch.Generator`` passed in, so a seed
  fixes the views on any device;
- the standard GCD train/test transforms for image folders and CIFAR (``gcd_transform``), built
  with torchvision (the ``vit`` extra), applied per PIL image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entangle.errors import EntangleError, EntangleValueError

# ImageNet statistics: the GCD recipe normalises with them because its backbones are DINO ViTs
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor):
    """U[0, 1) numbers drawn on the generator's device, then moved next to ``like``.

    Drawing on the generator's device keeps the stream identical whichever device the data
    lives on (a CPU generator can drive augmentation of GPU tensors).
    """
    u = torch.rand(shape, generator=generator, device=generator.device)
    return u.to(device=like.device, dtype=like.dtype)


def _normal(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor):
    z = torch.randn(shape, generator=generator, device=generator.device)
    return z.to(device=like.device, dtype=like.dtype)


@dataclass(frozen=True)
class DigitAugment:
    """Random views of small grey images: shifts, contrast jitter, pixel noise.

    Works on a batch ``[b, 1, H, W]`` (or ``[b, H, W]``) of intensities in [0, 1], such as the
    8x8 scikit-learn digits. Each image is shifted with probability ``shift_prob`` (up to
    ``max_shift`` pixels per axis, zero-filled border), its contrast scaled by a factor in
    ``[1 - contrast, 1 + contrast]`` around its mean, and Gaussian pixel noise of std ``noise``
    added; results are clipped to [0, 1]. The defaults were chosen on digits: SimCLR
    pretraining with them raises k-means accuracy of the features above raw pixels, while
    shifting every image (``shift_prob=1``) lowered it.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> views = DigitAugment()(torch.rand(4, 1, 8, 8), g)   # [4, 1, 8, 8]
    """

    max_shift: int = 1
    shift_prob: float = 0.5
    contrast: float = 0.5
    noise: float = 0.2

    def __post_init__(self):
        if self.max_shift < 0 or self.contrast < 0 or self.noise < 0:
            raise EntangleValueError(
                f"DigitAugment: max_shift, contrast and noise must be >= 0, got "
                f"{self.max_shift}, {self.contrast}, {self.noise}"
            )
        if not 0 <= self.shift_prob <= 1:
            raise EntangleValueError(
                f"DigitAugment: shift_prob must be in [0, 1], got {self.shift_prob}"
            )

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return an augmented copy of ``x`` ``[b, 1, H, W]`` (same shape, dtype and device)."""
        if x.ndim not in (3, 4):
            raise EntangleValueError(
                f"DigitAugment expects images [b, 1, H, W] or [b, H, W], got {tuple(x.shape)}"
            )
        squeeze = x.ndim == 3
        img = x.unsqueeze(1) if squeeze else x
        b, _, h, w = img.shape
        s = self.max_shift
        if s > 0:
            # one gather per batch: pad, then read each image's window at its own offset
            padded = torch.nn.functional.pad(img, (s, s, s, s))
            offsets = (_uniform((b, 2), generator, img) * (2 * s + 1)).floor().long()
            offsets = offsets.clamp_max(2 * s)
            # an unshifted image reads the window at offset s (the original position)
            keep = _uniform((b, 1), generator, img) >= self.shift_prob
            offsets = torch.where(keep, torch.full_like(offsets, s), offsets)
            rows = torch.arange(h, device=img.device)[None, :] + offsets[:, :1]  # [b, H]
            cols = torch.arange(w, device=img.device)[None, :] + offsets[:, 1:]  # [b, W]
            bi = torch.arange(b, device=img.device)[:, None, None]
            img = padded[:, 0][bi, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
        if self.contrast > 0:
            factor = 1 + self.contrast * (2 * _uniform((b, 1, 1, 1), generator, img) - 1)
            mean = img.mean(dim=(2, 3), keepdim=True)
            img = mean + (img - mean) * factor
        if self.noise > 0:
            img = img + self.noise * _normal(tuple(img.shape), generator, img)
        img = img.clamp(0.0, 1.0)
        return img.squeeze(1) if squeeze else img


@dataclass(frozen=True)
class FeatureNoise:
    """Views of feature vectors ``[b, D]``: add Gaussian noise of std ``std`` (no images)."""

    std: float = 0.1

    def __post_init__(self):
        if self.std < 0:
            raise EntangleValueError(f"FeatureNoise: std must be >= 0, got {self.std}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return ``x + std * N(0, 1)``, same shape, dtype and device as ``x``."""
        return x + self.std * _normal(tuple(x.shape), generator, x)


def _torchvision_transforms():
    try:
        from torchvision import transforms
    except ImportError as exc:
        raise EntangleError(
            "image folders and CIFAR need torchvision, which is not installed; "
            'run: pip install "entangle-gcd[vit]"'
        ) from exc
    return transforms


def gcd_transform(kind: str = "train", *, image_size: int = 224, crop_pct: float = 0.875):
    """The standard GCD transform for RGB PIL images (torchvision, imported here).

    ``train``: resize to ``image_size / crop_pct`` (bicubic), random crop, horizontal flip,
    colour jitter, tensor, ImageNet normalisation. ``test``: the same resize, centre crop,
    tensor, normalisation.

    Args:
        kind: ``"train"`` (augmenting) or ``"test"`` (deterministic).
        image_size: side of the output crop.
        crop_pct: crop side / resized side.

    Returns:
        a callable PIL image -> ``[3, image_size, image_size]`` float tensor.

    Raises:
        EntangleError: torchvision is missing (install the ``vit`` extra).
    """
    if kind not in ("train", "test"):
        raise EntangleValueError(f"gcd_transform: kind must be 'train' or 'test', got {kind!r}")
    if not 0 < crop_pct <= 1:
        raise EntangleValueError(f"gcd_transform: crop_pct must be in (0, 1], got {crop_pct}")
    t = _torchvision_transforms()
    resize = t.Resize(int(image_size / crop_pct), interpolation=t.InterpolationMode.BICUBIC)
    tail = [t.ToTensor(), t.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if kind == "test":
        return t.Compose([resize, t.CenterCrop(image_size), *tail])
    return t.Compose(
        [resize, t.RandomCrop(image_size), t.RandomHorizontalFlip(), t.ColorJitter(), *tail]
    )


def data_augment(data):
    """The recipe's training augmentation for a ``GCDData``: images at ``data.image_size``."""
    if data.input_kind == "image":
        return default_augment("image", image_size=data.image_size)
    return default_augment(data.input_kind)


def default_augment(input_kind: str, **kw):
    """The augmentation the recipe uses for a data source's ``input_kind``.

    ``"digits"`` -> ``DigitAugment(**kw)``, ``"vector"`` -> ``FeatureNoise(**kw)``, ``"image"``
    -> ``gcd_transform("train", **kw)`` (needs torchvision).
    """
    if input_kind == "digits":
        return DigitAugment(**kw)
    if input_kind == "vector":
        return FeatureNoise(**kw)
    if input_kind == "image":
        return gcd_transform("train", **kw)
    raise EntangleValueError(
        f"no default augmentation for input kind {input_kind!r}; expected one of "
        "'digits', 'vector', 'image'"
    )
