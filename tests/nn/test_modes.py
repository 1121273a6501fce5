"""entangle.nn.modes: eval_mode restores every submodule's own mode, also on an exception."""

from __future__ import annotations

import pytest
import torch

from entangle.nn.modes import eval_mode


def _mixed() -> torch.nn.Sequential:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.ReLU())
    model.train()
    model[1].eval()  # a frozen part kept in eval inside a training model
    return model


def _modes(*models):
    return [m.training for model in models for m in model.modules()]


def test_eval_mode_switches_all_and_restores_mixed_modes():
    model, other = _mixed(), torch.nn.Linear(1, 1)
    before = _modes(model, other)
    assert before == [True, True, False, True, True]
    with eval_mode(model, other):
        assert _modes(model, other) == [False] * 5
    assert _modes(model, other) == before


def test_eval_mode_restores_when_the_block_raises():
    model = _mixed()
    with pytest.raises(KeyError), eval_mode(model):
        raise KeyError("boom")
    assert _modes(model) == [True, True, False, True]


def test_eval_mode_makes_dropout_deterministic_inside_the_block():
    model = torch.nn.Dropout(0.5).train()
    x = torch.ones(1000)
    with eval_mode(model):
        assert torch.equal(model(x), x)
    assert not torch.equal(model(x), x)
