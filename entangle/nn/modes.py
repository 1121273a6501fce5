"""Temporarily switching modules to eval mode without disturbing mixed train/eval states."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(*modules: torch.nn.Module):
    """Put ``modules`` in eval mode for a block; restore every submodule's own mode after.

    Restoring per submodule keeps mixed modes (e.g. a frozen prefix kept in eval inside a
    training model) as they were; ``module.train(was_training)`` would flip them all. Restored
    also when the block raises.
    """
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training
