"""The digits source shared by the data tests (loaded once per module)."""

from __future__ import annotations

import pytest

from entangle.data.datasets import load_source


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")
