"""The tiny models' helpers shared by the checkpoint tests: spellings and equality checks."""

from __future__ import annotations

import torch

K = 6  # classes of the tiny models


def to_legacy(state: dict) -> dict:
    """The ``weight_g`` / ``weight_v`` spelling that ``nn.utils.weight_norm`` writes."""
    return {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def assert_same_model(loaded, backbone, head, images):
    with torch.no_grad():
        z = backbone(images)
        torch.testing.assert_close(loaded.backbone(images), z, rtol=0, atol=0)
        if head is not None:
            for got, want in zip(loaded.head(z), head(z), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
