"""Cells as Ray tasks: a missing Ray says how to install it; a local runtime runs the cells."""

from __future__ import annotations

import sys

import pytest

from entangle.ablation import parse_grid, run_grid
from entangle.errors import EntangleError
from entangle.runs.directory import RunReader
from tests.ablation.tiny import TINY


def test_ray_launcher_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    spec = parse_grid({"base": TINY, "grid": {"seed": [0]}})
    with pytest.raises(EntangleError, match=r'pip install "entangle-gcd\[ray\]"'):
        run_grid(spec, tmp_path / "g", launcher="ray", report=False)


@pytest.mark.extras
def test_ray_launcher_runs_cells_on_a_local_ray_runtime(tmp_path):
    spec = parse_grid({"base": TINY, "grid": {"variant": ["baseline", "aga"]}})
    run = run_grid(spec, tmp_path / "g", launcher="ray", address="local", report=False)
    assert run.ok, run.failed
    assert sorted(o.status for o in run.outcomes) == ["done", "done"]
    assert all(RunReader(tmp_path / "g" / "cells" / c.name).complete for c in spec.cells())
