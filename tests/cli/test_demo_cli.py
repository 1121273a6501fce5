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
