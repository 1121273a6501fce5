"""Grids that would exhaust memory are refused before expanding; CSV cells never run (issue 19)."""

from __future__ import annotations

import pytest

from entangle.ablation.results import results_csv
from entangle.ablation.spec import GridSpec
from entangle.errors import EntangleValueError


def test_a_huge_grid_is_refused_from_its_axis_lengths():
    axis = list(range(100))
    spec = GridSpec(base={"data": "synthetic"}, grids=[{"lr": axis, "epochs": axis, "seed": axis}])
    with pytest.raises(EntangleValueError, match="1000000 cells.*ENTANGLE_MAX_CELLS"):
        spec.cells()


def test_formula_cells_are_quoted_and_numbers_kept():
    rows = [{"a": "=HYPERLINK(1)", "b": "+cmd|x", "c": -1.5, "d": "@x", "e": "\tx", "f": 3}]
    line = results_csv(rows).splitlines()[1]
    assert line.split(",")[:4] == ["'=HYPERLINK(1)", "'+cmd|x", "-1.5", "'@x"]
    assert line.endswith(",3")
