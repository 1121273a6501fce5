"""entangle.data.batches: two-view batches in their layout, seeded, and the worker count."""

from __future__ import annotations

import numpy as np
import torch

from entangle.data.augment import DigitAugment
from entangle.data.batches import batch_seed, default_workers, eval_inputs, make_batch


def test_make_batch_layout(digits):
    idx = torch.tensor([0, 5, 700, 1796])
    batch = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(0))
    assert batch["views"].shape == (8, 1, 8, 8)
    assert torch.equal(batch["labels"], digits.labels[idx])
    assert torch.equal(batch["labeled"], digits.labeled[idx])
    assert torch.equal(batch["novel"], digits.novel[idx])
    assert torch.equal(batch["index"], idx)
    assert not torch.equal(batch["views"][:4], batch["views"][4:])
    # without shifts, both views stay close to their own sample, in the given order
    gentle = DigitAugment(max_shift=0, contrast=0.2, noise=0.02)
    views = make_batch(digits, idx, gentle, torch.Generator().manual_seed(0))["views"]
    for v in (views[:4], views[4:]):
        corr = [np.corrcoef(v[i].flatten(), digits.x[j].flatten())[0, 1] for i, j in enumerate(idx)]
        assert min(corr) > 0.9


def test_make_batch_is_seeded(digits):
    idx = torch.arange(10)
    a = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(1))["views"]
    b = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(1))["views"]
    c = make_batch(digits, idx, DigitAugment(), torch.Generator().manual_seed(2))["views"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_inputs_of_in_memory_data_are_the_stored_rows(digits):
    rows = eval_inputs(digits, [3, 1, 3])
    assert torch.equal(rows, digits.x[[3, 1, 3]])


def test_batch_seed_follows_the_generator():
    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    first = [batch_seed(a) for _ in range(3)]
    assert first == [batch_seed(b) for _ in range(3)] and len(set(first)) == 3
    assert all(isinstance(s, int) and s >= 0 for s in first)


def test_default_workers_from_the_cores():
    assert default_workers(2) == 0 and default_workers(3) == 0
    assert default_workers(4) == 2 and default_workers(16) == 8 and default_workers(64) == 8
