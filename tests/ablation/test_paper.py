"""ablate --paper: the paper's four variants x three seeds with the EAGC authors' values."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from entangle.ablation.paper import paper_grid
from entangle.cli.app import app
from entangle.errors import EntangleValueError


def test_scars_grid_cells():
    cells = paper_grid("simgcd-scars", "/data/cars").cells()
    assert len(cells) == 12
    by_variant = {c.config.variant(): c.config for c in cells if c.config.seed == 0}
    assert sorted(by_variant) == ["aga", "baseline", "eagc", "eep"]
    base, full = by_variant["baseline"], by_variant["eagc"]
    assert not base.eagc and full.eagc and full.aga and full.eep
    # HaiyangZheng/EAGC scripts/SimGCD/train_scars.sh: --eep_weight 3, --memax_weight 1,
    # --reference_batch_size 32; every cell shares them (the baseline ignores the EAGC ones)
    assert {
        (c.config.eep_weight, c.config.memax_weight, c.config.reference_batch_size) for c in cells
    } == {(3.0, 1.0, 32)}
    assert {c.config.data for c in cells} == {"scars:/data/cars"}
    assert {c.config.preset for c in cells} == {"eagc"}


def test_unknown_grid_and_missing_root():
    with pytest.raises(EntangleValueError, match="unknown paper grid"):
        paper_grid("simgcd-mnist", "/x")
    out = CliRunner().invoke(app, ["ablate", "--paper", "simgcd-cub", "--dry-run"])
    assert out.exit_code != 0
