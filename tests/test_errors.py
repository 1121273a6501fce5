"""entangle.errors: each error is both an EntangleError and the builtin a caller expects."""

from __future__ import annotations

import warnings

import pytest

from entangle.errors import (
    EntangleError,
    EntangleRuntimeError,
    EntangleTypeError,
    EntangleValueError,
    EntangleWarning,
    warn_degenerate,
)


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (EntangleValueError, ValueError),
        (EntangleTypeError, TypeError),
        (EntangleRuntimeError, RuntimeError),
    ],
)
def test_each_error_is_caught_by_its_builtin_and_by_entangle_error(cls, builtin):
    for catch in (builtin, EntangleError):
        with pytest.raises(catch, match="what came"):
            raise cls("what came")
    assert not issubclass(cls, tuple({ValueError, TypeError, RuntimeError} - {builtin}))


def test_warning_is_a_user_warning_not_an_error():
    assert issubclass(EntangleWarning, UserWarning)
    assert not issubclass(EntangleWarning, EntangleError)


def _metric():
    warn_degenerate("NaN because one group is empty")


def test_warn_degenerate_points_at_the_callers_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _metric()  # stacklevel 3: warn_degenerate -> _metric -> this line
    (w,) = caught
    assert w.category is EntangleWarning
    assert str(w.message) == "NaN because one group is empty"
    assert w.filename == __file__
    with pytest.warns(EntangleWarning):
        warn_degenerate("x", stacklevel=1)
