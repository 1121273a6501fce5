"""The GPU check's time budget: which settings each part runs with, or whether it is skipped.

:class:`TimeBudget` reads a clock (planted in tests) against one budget in seconds. Before a
part starts, :meth:`TimeBudget.plan` compares the time left with the part's estimated cost
(:class:`Part`: at its full settings and, where it has them, at lighter ones), keeping back
the cheapest form of every later part: the full settings when they fit, else the lighter
ones, else (the later parts then get less) whichever form still fits in all the time left;
a part that fits in no form is skipped, with a note saying so. See docs/reliability.md
("The GPU check command").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from entangle.errors import EntangleValueError


@dataclass(frozen=True)
class Part:
    """One part of the check and its estimated cost in seconds.

    Attributes:
        name: shown in the notes.
        full_s: the estimate at the full settings.
        light_s: the estimate at the lighter settings, None when the part has none.
        light: what the lighter settings change, for the note (``"1 bench round, not 3"``).
    """

    name: str
    full_s: float
    light_s: float | None = None
    light: str = ""

    @property
    def min_s(self) -> float:
        """The cheapest form's estimate: the least time the part can start in."""
        return self.full_s if self.light_s is None else self.light_s


@dataclass(frozen=True)
class Plan:
    """What a part runs with: ``mode`` ``"full"``, ``"light"`` or ``"skip"``; ``allowed_s``,
    the seconds it may take (the time left minus what the later parts keep back, never less
    than its own estimate when it runs); ``note``, one line saying so."""

    mode: str
    allowed_s: float
    note: str

    @property
    def runs(self) -> bool:
        return self.mode != "skip"


class TimeBudget:
    """``total_s`` seconds from the moment it is made, read on ``clock``."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.perf_counter):
        if not total_s > 0:
            raise EntangleValueError(f"the time budget must be > 0 seconds, got {total_s}")
        self.total_s = float(total_s)
        self.clock = clock
        self.start = clock()

    def used(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return max(0.0, self.total_s - self.used())

    def plan(self, part: Part, later: Sequence[Part] = ()) -> Plan:
        """How ``part`` runs, with ``later`` (the parts still to run after it) kept in view."""
        left = self.left()
        spare = left - sum(p.min_s for p in later)  # what the later parts' cheapest forms leave
        if part.full_s <= spare:
            mode = "full"
        elif part.light_s is not None and part.light_s <= spare:
            mode = "light"
        elif part.min_s <= left:
            mode = "full" if part.light_s is None else "light"
        else:
            return Plan(
                "skip",
                0.0,
                f"skipped: {left:.0f} s of the {self.total_s:.0f} s budget left, and "
                f"{part.name} needs about {part.min_s:.0f} s",
            )
        note = f"{left:.0f} s of the {self.total_s:.0f} s budget left; " + (
            f"full settings (about {part.full_s:.0f} s)"
            if mode == "full"
            else f"lighter settings: {part.light} (about {part.light_s:.0f} s; the full ones "
            f"need about {part.full_s:.0f} s)"
        )
        if part.min_s > spare:
            note += "; the later parts get less"
        return Plan(mode, max(spare, part.min_s), note)

    def summary(self) -> str:
        """``"123 s used of the 300 s budget"``."""
        return f"{self.used():.0f} s used of the {self.total_s:.0f} s budget"
