"""entangle.metrics._tensors: the input coercions every metric shares, and their refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.metrics._tensors import as_mask, as_matrix, as_tensor, compute_dtype, pair_flat


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.int64, torch.float32),
        (torch.bool, torch.float32),
    ],
)
def test_compute_dtype_promotes_half_and_integers_keeps_double(dtype, expected):
    assert compute_dtype(dtype) == expected


def test_as_tensor_shares_numpy_memory_and_names_the_argument_on_a_bad_type():
    a = np.zeros(3)
    t = as_tensor(a, "x")
    a[0] = 5.0
    assert t[0].item() == 5.0
    same = torch.ones(2)
    assert as_tensor(same, "x") is same
    assert as_tensor([1, 2], "x").tolist() == [1, 2]
    with pytest.raises(EntangleTypeError, match="features: expected .* got dict"):
        as_tensor({"a": 1}, "features")


def test_as_matrix_promotes_and_refuses_other_ranks():
    m = as_matrix(np.ones((2, 3), dtype=np.float16), "features")
    assert m.shape == (2, 3) and m.dtype == torch.float32
    with pytest.raises(EntangleValueError, match=r"features: expected a 2-D .* \(4,\)"):
        as_matrix(torch.ones(4), "features")


def test_as_mask_returns_bool_and_names_both_lengths():
    assert as_mask([1, 0, 2], 3, "labeled").tolist() == [True, False, True]
    with pytest.raises(EntangleValueError, match=r"labeled: .* 4 entries .* \(3,\)"):
        as_mask([1, 0, 1], 4, "labeled")
    with pytest.raises(EntangleValueError, match=r"\(1, 3\)"):
        as_mask([[1, 0, 1]], 3, "labeled")


def test_pair_flat_tensors_are_reshaped_and_sizes_checked():
    s, u = pair_flat(torch.ones(2, 3), torch.zeros(6))
    assert s.shape == u.shape == (6,)
    with pytest.raises(EntangleValueError, match="g_sup has 6 entries, g_unsup 5"):
        pair_flat(torch.ones(6), torch.ones(5))
    with pytest.raises(EntangleTypeError, match="both gradients as tensors or both"):
        pair_flat(torch.ones(2), [torch.ones(2)])


def test_pair_flat_lists_fill_one_sided_none_with_zeros_and_skip_both_none():
    s, u = pair_flat(
        [torch.tensor([1.0, 2.0]), None, None, torch.tensor([[3.0]])],
        [None, None, torch.tensor([4.0]), torch.tensor([[5.0]])],
    )
    assert s.tolist() == [1.0, 2.0, 0.0, 3.0]
    assert u.tolist() == [0.0, 0.0, 4.0, 5.0]
    empty_s, empty_u = pair_flat([None], [None])
    assert empty_s.numel() == empty_u.numel() == 0


def test_pair_flat_lists_refuse_other_lengths_and_shapes():
    with pytest.raises(EntangleValueError, match=r"\(1 vs 2\)"):
        pair_flat([torch.ones(1)], [torch.ones(1), torch.ones(1)])
    with pytest.raises(EntangleValueError, match=r"parameter 1: .* \(2,\), g_unsup \(3,\)"):
        pair_flat([torch.ones(1), torch.ones(2)], [torch.ones(1), torch.ones(3)])
