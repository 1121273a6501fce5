"""The GPU check's time budget on a planted clock: full, lighter, squeezed or skipped."""

from __future__ import annotations

import pytest

from entangle.bench.time_budget import Part, TimeBudget
from entangle.errors import EntangleValueError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


BENCH = Part("the bench", full_s=90, light_s=45, light="1 round instead of 3")
RUN = Part("the run", full_s=120, light_s=70, light="10 steps")
STEPS = Part("the steps", full_s=20)


def test_full_settings_while_the_later_parts_keep_their_cheapest_form():
    clock = Clock()
    budget = TimeBudget(300, clock)
    plan = budget.plan(BENCH, [RUN])
    assert (plan.mode, plan.allowed_s) == ("full", 230)  # 300 left, 70 kept back for the run
    assert plan.note == "300 s of the 300 s budget left; full settings (about 90 s)"
    clock.now += 90
    plan = budget.plan(RUN)
    assert (plan.mode, plan.allowed_s) == ("full", 210)


def test_lighter_settings_when_the_full_ones_do_not_fit():
    clock = Clock()
    budget = TimeBudget(300, clock)
    clock.now += 150  # 150 left: 80 after the run's 70, too little for the bench's 90
    plan = budget.plan(BENCH, [RUN])
    assert (plan.mode, plan.allowed_s) == ("light", 80)
    assert plan.note == (
        "150 s of the 300 s budget left; lighter settings: 1 round instead of 3 (about 45 s; "
        "the full ones need about 90 s)"
    )


def test_a_part_that_fits_only_in_all_the_time_left_runs_and_says_the_later_parts_get_less():
    clock = Clock()
    budget = TimeBudget(300, clock)
    clock.now += 250  # 50 left: the bench's lighter 45 fits, not with the run's 70 kept back
    plan = budget.plan(BENCH, [RUN])
    assert (plan.mode, plan.allowed_s) == ("light", 45)
    assert plan.note.endswith("; the later parts get less")
    plan = budget.plan(STEPS, [RUN])  # no lighter form: full, in the time left
    assert (plan.mode, plan.allowed_s) == ("full", 20)


def test_a_part_that_cannot_start_is_skipped_with_a_note():
    clock = Clock()
    budget = TimeBudget(300, clock)
    clock.now += 290
    plan = budget.plan(BENCH)
    assert not plan.runs and plan.mode == "skip"
    assert plan.note == "skipped: 10 s of the 300 s budget left, and the bench needs about 45 s"
    clock.now += 100  # past the budget: nothing left, never negative
    assert budget.left() == 0
    assert budget.plan(STEPS).note.startswith("skipped: 0 s of the 300 s budget left")
    assert budget.summary() == "390 s used of the 300 s budget"


@pytest.mark.parametrize("total", [0, -5, float("nan")])
def test_a_budget_must_be_positive(total):
    with pytest.raises(EntangleValueError, match="must be > 0 seconds"):
        TimeBudget(total, Clock())
