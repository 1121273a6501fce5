"""The Probe's step counter: which backward call comes next, and the epoch records carry.

A base of :class:`~entangle.probing.probe.Probe`; loops set both through the public
``set_step`` / ``set_epoch`` (or the ``calls`` / ``epoch`` properties), never the fields.
"""

from __future__ import annotations

from entangle.errors import EntangleValueError


class StepCounter:
    """Counts ``backward`` calls; every ``every``-th one is probed.

    Args:
        every: probe one backward call in ``every`` (checked by the Probe).
    """

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self._calls = 0
        self._epoch: int | None = None

    @property
    def calls(self) -> int:
        """How many ``backward`` calls this probe has seen (the next record's ``step``)."""
        return self._calls

    @calls.setter
    def calls(self, value: int) -> None:
        self.set_step(value)

    def set_step(self, step: int) -> None:
        """Set the backward-call count, e.g. to the global step when a run resumes, so
        ``every`` and the records' steps stay aligned."""
        if int(step) < 0:
            raise EntangleValueError(f"step must be a non-negative integer, got {step}")
        self._calls = int(step)

    @property
    def epoch(self) -> int | None:
        """The epoch written into every step record (None: none written)."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int | None) -> None:
        self.set_epoch(value)

    def set_epoch(self, epoch: int | None) -> None:
        """Set the epoch step records carry from now on (``probe.epoch = e`` does the same)."""
        self._epoch = None if epoch is None else int(epoch)

    def is_due(self) -> bool:
        """Whether the next ``backward`` call will be probed."""
        return self.calls % self.every == 0
