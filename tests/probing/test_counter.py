"""entangle.probing.counter: the step counter's due calls, and its checked setters."""

from __future__ import annotations

import pytest

from entangle.errors import EntangleValueError
from entangle.probing.counter import StepCounter


def test_every_kth_call_is_due():
    counter = StepCounter(every=3)
    due = []
    for _ in range(7):
        due.append(counter.is_due())
        counter.set_step(counter.calls + 1)
    assert due == [True, False, False, True, False, False, True]
    assert counter.calls == 7


def test_set_step_aligns_a_resumed_run_and_refuses_negatives():
    counter = StepCounter(every=4)
    counter.calls = 8  # the property goes through set_step
    assert counter.calls == 8 and counter.is_due()
    counter.set_step("9")
    assert counter.calls == 9 and not counter.is_due()
    with pytest.raises(EntangleValueError, match="non-negative integer, got -1"):
        counter.calls = -1
    assert counter.calls == 9


def test_epoch_starts_unset_and_is_stored_as_an_int():
    counter = StepCounter(every=1)
    assert counter.epoch is None
    counter.epoch = 2.0
    assert counter.epoch == 2 and isinstance(counter.epoch, int)
    counter.set_epoch(None)
    assert counter.epoch is None
