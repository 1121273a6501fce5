"""A small digits model and the analysis settings that keep an analysis of it quick."""

from __future__ import annotations

import torch

from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead

SMALL = {"max_samples": 160, "grad_batches": 2, "batch_size": 24, "tsne": False, "report": False}


def digits_models(num_classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    backbone = ResidualMLP(in_dim=64, dim=24, depth=2).eval()
    head = GCDHead(24, num_classes, proj_dim=16, hidden_dim=32).eval()
    return backbone, head
