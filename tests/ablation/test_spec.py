"""Grid specs: validation, the variants' switches, cell names, several grids, TOML files."""

from __future__ import annotations

import pytest

from entangle.ablation import cell_name, load_grid, parse_grid
from entangle.ablation.spec import valid_keys
from entangle.errors import EntangleTypeError, EntangleValueError


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(EntangleValueError) as err:
        parse_grid({"base": {"epoch": 3}})
    assert "'epoch'" in str(err.value)
    assert all(k in str(err.value) for k in ("variant", "epochs", "aga_weight", "seed"))
    with pytest.raises(EntangleValueError, match="unknown setting 'lamda'"):
        parse_grid({"grid": {"lamda": [1.0]}})
    with pytest.raises(EntangleValueError, match="top-level"):
        parse_grid({"base": {}, "grids": {}})


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ({"grid": {"variant": ["eagc", "nope"]}}, EntangleValueError, "not one of"),
        ({"grid": {"seed": 1}}, EntangleTypeError, "must be a list"),
        ({"grid": {"seed": []}}, EntangleValueError, "empty"),
        ({"grid": {"seed": [0, 0]}}, EntangleValueError, "twice"),
        ({"base": {"epochs": 1.5}}, EntangleTypeError, "epochs must be int"),
        ({"base": {"eagc": 1}}, EntangleTypeError, "eagc must be bool"),
        ({"base": {"epochs": True}}, EntangleTypeError, "epochs must be int"),
        ({"grid": {"epochs": [1, 0]}}, EntangleValueError, "epochs must be >= 1"),
        ({"grid": {"device": ["cpu"]}}, EntangleValueError, "cannot be swept"),
        ({"base": {"eagc": True}, "grid": {"variant": ["aga"]}}, EntangleValueError, "variant"),
    ],
)
def test_bad_specs_are_refused(raw, error, match):
    with pytest.raises(error, match=match):
        parse_grid(raw)


def test_variants_map_onto_the_eagc_switches():
    spec = parse_grid({"grid": {"variant": ["baseline", "aga", "eep", "eagc", "eagc-fixed"]}})
    got = {c.settings["variant"]: c.config for c in spec.cells()}
    assert {v: c.variant() for v, c in got.items()} == {v: v for v in got}
    assert not got["baseline"].eagc
    assert (got["aga"].aga, got["aga"].eep) == (True, False)
    assert (got["eep"].aga, got["eep"].eep, got["eep"].adaptive) == (False, True, True)
    assert got["eagc-fixed"].adaptive is False and got["eagc"].adaptive is True


def test_cells_cross_the_lists_with_names_from_the_settings():
    spec = parse_grid(
        {
            "base": {"epochs": 2, "aga_weight": 1},
            "grid": {"seed": [0, 1], "variant": ["baseline", "eagc"], "eep_weight": [0.5, 2]},
        }
    )
    cells = spec.cells()
    assert len(cells) == 8 and len({c.name for c in cells}) == 8
    assert spec.swept_keys() == ["variant", "eep_weight", "seed"]  # seed last
    assert cells[0].name == "variant=baseline__eep_weight=0.5__seed=0"
    assert cells[-1].name == "variant=eagc__eep_weight=2.0__seed=1"
    assert all(c.config.epochs == 2 and c.config.aga_weight == 1.0 for c in cells)
    assert isinstance(cells[0].config.aga_weight, float)  # TOML int promoted for a float field


def test_several_grids_join_and_identical_cells_run_once():
    spec = parse_grid(
        {
            "grid": [
                {"variant": ["baseline", "eagc"], "seed": [0, 1]},
                {"variant": ["eagc"], "aga_weight": [0.7, 1.4], "seed": [0, 1]},
            ]
        }
    )
    names = [c.name for c in spec.cells()]
    # eagc at the default aga_weight 0.7 comes from both grids: kept once
    assert len(names) == 6 == len(set(names))
    assert "variant=eagc__aga_weight=0.7__seed=1" in names
    assert "variant=baseline__aga_weight=0.7__seed=0" in names


def test_names_are_filesystem_safe_and_keep_values_apart():
    a = cell_name({"data": "imagefolder:/data/a b"})
    b = cell_name({"data": "imagefolder:/data/a-b"})
    assert a != b
    assert all(ch.isalnum() or ch in "._+-=" for ch in a)
    assert cell_name({}) == "base"
    assert cell_name({"flag": True, "x": None, "lr": 1e-05}) == "flag=true__x=none__lr=1e-05"
    long = cell_name({f"k{i}": "v" * 30 for i in range(10)})
    assert len(long) <= 160
    assert long != cell_name({f"k{i}": "v" * 30 for i in range(9)} | {"k9": "w" * 30})


def test_load_grid_reads_toml_and_reports_syntax_errors(tmp_path):
    good = tmp_path / "g.toml"
    good.write_text('[base]\nepochs = 2\n[grid]\nvariant = ["aga"]\n', encoding="utf-8")
    assert load_grid(good).cells()[0].config.variant() == "aga"
    bad = tmp_path / "bad.toml"
    bad.write_text("[base\n", encoding="utf-8")
    with pytest.raises(EntangleValueError, match="not valid TOML"):
        load_grid(bad)
    with pytest.raises(EntangleValueError, match="does not exist"):
        load_grid(tmp_path / "missing.toml")


def test_valid_keys_are_the_trainconfig_fields():
    from dataclasses import fields

    from entangle.gcd.train import TrainConfig

    assert valid_keys() == ["variant"] + [f.name for f in fields(TrainConfig)]
