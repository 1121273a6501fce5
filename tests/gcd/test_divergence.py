"""entangle.gcd.divergence: the longest run of non-finite steps, counted without host reads."""

from __future__ import annotations

import torch

from entangle.gcd.divergence import NonFiniteWatch

NAN, INF = float("nan"), float("inf")


def _steps(watch: NonFiniteWatch, losses):
    for loss in losses:
        watch.update(torch.tensor(loss), torch.tensor(1.0))


def test_longest_run_of_nonfinite_steps_is_counted():
    watch = NonFiniteWatch("cpu")
    _steps(watch, [1.0, NAN, NAN, 0.5, INF, -INF, NAN, 2.0, NAN])
    assert watch.read() == 3
    assert watch.current.item() == 1  # the last step started a new run
    assert watch.current.device.type == "cpu" and watch.current.dtype == torch.int64


def test_any_nonfinite_loss_of_a_step_counts_and_finite_steps_do_not():
    watch = NonFiniteWatch("cpu")
    watch.update(torch.tensor(1.0), torch.tensor(NAN), torch.tensor(2.0))
    watch.update(torch.tensor([1.0, INF]).sum())
    assert watch.read() == 2
    fresh = NonFiniteWatch("cpu")
    _steps(fresh, [0.0, 1e30, -5.0])
    assert fresh.read() == 0


def test_reset_forgets_the_longest_but_keeps_the_current_run():
    watch = NonFiniteWatch("cpu")
    _steps(watch, [NAN, NAN, NAN, 1.0, NAN])
    assert watch.read() == 3
    watch.reset()
    assert watch.read() == 1
    _steps(watch, [NAN])  # the run that spans the epoch boundary keeps growing
    assert watch.read() == 2


def test_update_does_not_follow_the_graph():
    watch = NonFiniteWatch("cpu")
    w = torch.ones((), requires_grad=True)
    watch.update(w * NAN)
    assert not watch.current.requires_grad and watch.read() == 1
