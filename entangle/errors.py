"""One family of errors and one warning class for everything entangle raises itself.

Each message says what was expected, what came, and what to do. The CLI prints
``EntangleError`` messages without a traceback and exits with code 2.
"""

from __future__ import annotations

import warnings


class EntangleError(Exception):
    """Base class of every error entangle raises on purpose."""


class EntangleValueError(EntangleError, ValueError):
    """A value or a shape that cannot be right."""


class EntangleTypeError(EntangleError, TypeError):
    """An argument of the wrong type."""


class EntangleRuntimeError(EntangleError, RuntimeError):
    """Lifecycle misuse: attaching twice, using a detached object, and the like."""


class EntangleWarning(UserWarning):
    """A quantity came out as NaN (or was clipped) for a reason the user should see."""


def warn_degenerate(message: str, stacklevel: int = 3) -> None:
    """Warn that a metric is NaN or degraded, saying why."""
    warnings.warn(message, EntangleWarning, stacklevel=stacklevel)
