"""Toy models and batches shared by the probe / EAGC tests (test data, no test logic)."""

from __future__ import annotations

import torch


class ToyBackbone(torch.nn.Module):
    """Backbone protocol in miniature: embed, blocks (ModuleList), pool -> [n, D]."""

    def __init__(self, d_in: int = 6, width: int = 8, depth: int = 3, dim: int = 5):
        super().__init__()
        self.stem = torch.nn.Linear(d_in, width)
        self.blocks = torch.nn.ModuleList(
            [
                torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh())
                for _ in range(depth)
            ]
        )
        self.norm = torch.nn.Linear(width, dim)
        self.feature_dim = dim

    def embed(self, x):
        return torch.tanh(self.stem(x))

    def pool(self, h):
        return self.norm(h)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.pool(h)


def toy_losses(head, z, labels, labeled):
    """A small GCD-like split objective: CE on labeled rows, entropy terms on all rows.

    Returns (sup, unsup, logits).
    """
    logits = head(z)
    if labeled.any():
        sup = torch.nn.functional.cross_entropy(logits[labeled], labels[labeled])
    else:
        sup = logits.sum() * 0.0
    p = logits.softmax(1)
    unsup = -(p * logits.log_softmax(1)).sum(1).mean() - 0.5 * torch.special.entr(p.mean(0)).sum()
    return sup, unsup, logits


def toy_batch(n: int = 12, d_in: int = 6, classes: int = 4, n_labeled: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[:n_labeled] = True
    novel = ~labeled & (y >= classes // 2)
    return x, y, labeled, novel


def toy_models(seed: int = 0, classes: int = 4):
    torch.manual_seed(seed)
    backbone = ToyBackbone().double()
    head = torch.nn.Linear(backbone.feature_dim, classes).double()
    return backbone, head


def toy_step(probe, backbone, head, x, y, labeled, novel, eagc=None, ref=None):
    """One probed toy step (EAGC's coordination when given); rows are named 100, 101, ..."""
    z = backbone(x)
    if eagc is not None:
        z = eagc.coordinate(z, labeled, ref)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    index = torch.arange(100, 100 + x.shape[0])
    return probe.backward(
        sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits, targets=y, index=index
    )


def attributed_toy_run(run, *, steps: int = 3, config=None, tensorboard=None, rows=None):
    """A toy run directory (16 rows, 6 labeled) probed with class attribution on every step.

    ``rows``: ``attribution_rows`` (a seeded subsample of that many rows; None every row);
    ``tensorboard``: a live TensorBoard log directory beside it, if given.
    """
    from entangle import Probe, last_block

    backbone, head = toy_models()
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    probe = Probe(
        {"last_block": last_block(backbone)},
        run=run,
        config=config,
        attribution=True,
        attribution_rows=rows,
        tensorboard=tensorboard,
    )
    opt = torch.optim.SGD(backbone.parameters(), lr=0.05)
    for _ in range(steps):
        z = backbone(x)
        sup, unsup, logits = toy_losses(head, z, y, labeled)
        opt.zero_grad()
        probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits,
                       targets=y)  # fmt: skip
        opt.step()
    probe.close()
    return run
