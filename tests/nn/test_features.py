"""entangle.nn.features: reference_features keeps the rows mask_lab names, in eval mode."""

from __future__ import annotations

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.nn.features import reference_features


class _Double(torch.nn.Module):
    """Doubles its input; records whether it ran in training mode."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.seen_training: list[bool] = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return x * self.scale


def test_plain_tensors_and_tuples_give_every_row_in_eval_mode():
    model = _Double().train()
    x1, x2 = torch.arange(6.0).view(3, 2), torch.ones(2, 2)
    z = reference_features(model, [x1, (x2, torch.zeros(2))])
    torch.testing.assert_close(z, torch.cat([x1, x2]) * 2)
    assert model.seen_training == [False, False] and model.training
    assert not z.requires_grad and z.dtype == torch.float32


def test_mask_lab_keeps_labeled_or_unlabeled_rows_of_every_view():
    model = _Double()
    x = torch.arange(8.0).view(4, 2)
    views = [x, x + 100]
    mask = torch.tensor([[1], [0], [0], [1]])  # SimGCD's [B, 1]
    batch = (views, torch.zeros(4), torch.arange(4), mask)
    labeled = reference_features(model, [batch])
    torch.testing.assert_close(labeled, torch.cat([x[[0, 3]], x[[0, 3]] + 100]) * 2)
    unlabeled = reference_features(model, [batch], rows="unlabeled")
    torch.testing.assert_close(unlabeled, torch.cat([x[[1, 2]], x[[1, 2]] + 100]) * 2)


def test_feature_fn_is_used_and_batches_without_kept_rows_are_skipped():
    model = _Double()
    none_kept = (torch.ones(2, 2), None, None, torch.tensor([0, 0]))
    some = (torch.full((2, 2), 3.0), None, None, torch.tensor([1, 0]))
    z = reference_features(model, [none_kept, some], feature_fn=lambda m, x: m(x)[:, :1])
    torch.testing.assert_close(z, torch.tensor([[6.0]]))


def test_no_rows_at_all_or_a_bad_mask_is_a_clear_error():
    model = _Double()
    with pytest.raises(EntangleValueError, match="no labeled rows"):
        reference_features(model, [(torch.ones(2, 2), None, None, torch.tensor([0, 0]))])
    with pytest.raises(EntangleValueError, match=r"mask_lab \(\[2\] or \[2, 1\] of 0/1\)"):
        reference_features(model, [(torch.ones(2, 2), None, None, torch.tensor([2, 0]))])
    with pytest.raises(EntangleValueError, match=r"got shape \(3,\)"):
        reference_features(model, [(torch.ones(2, 2), None, None, torch.tensor([1, 0, 1]))])
