"""``entangle demo --variants``: the default is the demo's runs; unknown names refused early."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from entangle.cli.app import app
from entangle.cli.demo import demo
from entangle.errors import EntangleValueError
from entangle.report.demo import DEMO_VARIANTS


def test_default_variants_are_the_demos_both_baselines_and_eagcs():
    default = inspect.signature(demo).parameters["variants"].default
    assert tuple(default.split(",")) == DEMO_VARIANTS
    assert {"baseline", "baseline-reference"} <= set(DEMO_VARIANTS)


def test_unknown_variant_is_refused_before_any_work(tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path / "d"), "--variants", "baseline,nope"]
    )
    assert isinstance(result.exception, EntangleValueError)
    assert "nope" in str(result.exception)
    assert not (tmp_path / "d").exists()


def test_demo_table_fits_80_columns_with_every_run_name_whole():
    from rich.console import Console

    from entangle.cli.demo import summary_table

    names = ["baseline", "baseline-reference", "eagc", "aga", "eep", "eagc-fixed"]
    row = dict(acc_all=0.878, acc_old=0.971, acc_new=0.831, cos_mean=-0.083)
    row |= dict(conflict_rate=0.62, gdc_early=0.162, gdc_mean=0.175, soc_early=0.961)
    console = Console(width=80, record=True)
    console.print(summary_table({n: row for n in names}))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in "".join(lines)
    for name in names:  # each name whole at the start of its row, with all 8 numbers
        assert any(line.split()[:1] == [name] and len(line.split()) == 9 for line in lines)
