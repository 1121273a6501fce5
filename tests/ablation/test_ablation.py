"""Ablation grids: spec validation, cell names, aggregation, failures, resume, shared weights."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from entangle.ablation import aggregate, cell_name, load_grid, parse_grid, run_grid
from entangle.ablation.results import (
    METRICS,
    format_stat,
    results_csv,
    summary_markdown,
    table,
)
from entangle.ablation.spec import valid_keys
from entangle.errors import EntangleError, EntangleTypeError, EntangleValueError
from entangle.runs.directory import RunReader

# synthetic data, no pretraining, one short epoch: a cell trains in about a second
TINY = {
    "data": "synthetic",
    "epochs": 1,
    "batch_size": 128,
    "pretrain_epochs": 0,
    "reference_epochs": 1,
    "probe_every": 2,
    "probeset_every": 100,
    "probeset_size": 100,
    "soc_k": 4,
    "device": "cpu",
    "save_features": False,
}


# ---------------------------------------------------------------- spec


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


# ---------------------------------------------------------------- aggregation


def _row(variant, weight, seed, acc, gdc, status="done"):
    return {
        "cell": f"{variant}-{weight}-{seed}",
        "status": status,
        "variant": variant,
        "aga_weight": weight,
        "seed": seed,
        "acc_all": acc,
        "gdc": gdc,
    }


def test_aggregate_groups_seeds_and_matches_numpy():
    rows = [
        _row("eagc", 0.7, 0, 0.60, 0.30),
        _row("baseline", 0.7, 0, 0.50, 0.50),
        _row("eagc", 0.7, 1, 0.64, None),  # NaN GDC: left out of the GDC mean only
        _row("eagc", 1.4, 0, 0.70, 0.20),
        _row("eagc", 0.7, 2, 0.71, 0.26),
        _row("baseline", 0.7, 1, 0.40, 0.70),
        _row("eagc", 1.4, 1, 0.0, 0.0, status="failed"),
    ]
    groups = aggregate(rows, ["variant", "aga_weight"], metrics=("acc_all", "gdc"))
    assert [tuple(g.settings.values()) for g in groups] == [
        ("eagc", 0.7),
        ("baseline", 0.7),
        ("eagc", 1.4),
    ]
    eagc = groups[0]
    assert eagc.seeds == [0, 1, 2]
    acc = np.array([0.60, 0.64, 0.71])
    assert eagc.stats["acc_all"] == pytest.approx((acc.mean(), acc.std(ddof=1), 3))
    assert eagc.stats["gdc"] == pytest.approx((0.28, np.std([0.30, 0.26], ddof=1), 2))
    base = groups[1].stats["acc_all"]
    assert base[0] == pytest.approx(0.45) and base[1] == pytest.approx(math.sqrt(0.005))
    single = groups[2]
    assert single.failed == ["eagc-1.4-1"] and single.seeds == [0]
    mean, std, n = single.stats["acc_all"]
    assert (mean, n) == (0.70, 1) and math.isnan(std)  # the failed seed's 0.0 is not counted


def test_table_and_summary_text():
    rows = [_row("eagc", 0.7, s, a, 0.3) for s, a in ((0, 0.612), (1, 0.634))]
    rows.append(_row("eagc|x", 0.7, 0, 0.5, 0.3, status="failed") | {"error": "boom"})
    groups = aggregate(rows, ["variant"], metrics=("acc_all", "acc_old", "acc_new", "gdc"))
    for g in groups:
        g.stats.update({m: (math.nan, math.nan, 0) for m in ("gdc_raw", "soc", "gdc_all")})
        g.stats["soc_all"] = (math.nan, math.nan, 0)
    header, body = table(groups, ["variant"])
    assert header[:2] == ["variant", "seeds"] and "All" in header
    # the paper's window is the headline, the whole run stands beside it, each labelled
    assert header.index("GDC (first 200 steps)") < header.index("GDC (whole run)")
    assert "ProbeSet SOC (first 200 steps)" in header and "ProbeSet SOC (whole run)" in header
    std = np.std([61.2, 63.4], ddof=1)
    assert body[0][header.index("All")] == f"62.3 ± {std:.1f}"
    assert body[1][1] == "0 (1 missing)" and body[1][header.index("All")] == "-"
    text = summary_markdown(groups, ["variant"], rows)
    assert "eagc\\|x" in text and "boom" in text  # a | in a value does not break the table
    assert format_stat((0.5, math.nan, 1)) == "0.500"


def test_results_csv_has_one_row_per_cell():
    rows = [_row("eagc", 0.7, 0, 0.6, 0.3), _row("baseline", 0.7, 0, 0.5, None)]
    lines = results_csv(rows).splitlines()
    assert lines[0] == "cell,status,variant,aga_weight,seed,acc_all,gdc"
    assert lines[2].endswith(",0.5,")  # None is an empty field


# ---------------------------------------------------------------- running


def test_failed_cell_is_recorded_and_the_others_go_on(tmp_path):
    spec = parse_grid(
        {"base": TINY, "grid": {"variant": ["baseline", "eagc"], "data": ["nosuch", "synthetic"]}}
    )
    run = run_grid(spec, tmp_path / "g", report=False)
    assert not run.ok
    status = {o.name: o.status for o in run.outcomes}
    bad = [n for n in status if "data=nosuch" in n]
    assert sorted(status[n] for n in bad) == ["failed", "failed"]
    assert all(status[n] == "done" for n in status if n not in bad)
    failed = json.loads((tmp_path / "g" / "cells" / bad[0] / "FAILED").read_text())
    assert "EntangleValueError" in failed["error"] and "nosuch" in failed["error"]
    rows = {r["cell"]: r for r in run.rows}
    assert rows[bad[0]]["status"] == "failed" and "nosuch" in rows[bad[0]]["error"]
    assert 0 <= rows["variant=eagc__data=synthetic"]["acc_all"] <= 1

    # a rerun skips the finished cells and retries the failed ones (which fail again)
    again = run_grid(spec, tmp_path / "g", report=False)
    assert {o.name: o.status for o in again.outcomes} == {
        n: ("failed" if n in bad else "skipped") for n in status
    }


def test_variants_of_one_seed_start_from_identical_weights(tmp_path):
    base = TINY | {"pretrain_epochs": 1, "data": "digits"}
    variants = ["baseline", "baseline-reference", "aga"]
    spec = parse_grid({"base": base, "grid": {"variant": variants, "seed": [3]}})
    run = run_grid(spec, tmp_path / "g", report=False)
    assert run.ok
    setups = sorted((tmp_path / "g" / "setups").glob("*.pt"))
    # one pretrained setup for the seed, one reference model for the variants that need it
    assert len(setups) == 2 and sum(".reference" in p.name for p in setups) == 1
    state = torch.load([p for p in setups if ".reference" not in p.name][0], weights_only=True)
    from entangle.gcd.train import TrainConfig, prepare

    fresh = prepare(TrainConfig(**base | {"seed": 3}))
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(state["backbone"][key], value), key
    # the first probed step shows the start: the baseline from the pretrained weights, the
    # other two from the reference model (EAGC is the identity in the forward pass)
    first = {
        c.settings["variant"]: RunReader(tmp_path / "g" / "cells" / c.name).steps[0]
        for c in spec.cells()
    }
    sup = {v: s["losses"]["sup"] for v, s in first.items()}
    assert sup["baseline-reference"] == pytest.approx(sup["aga"], rel=1e-6)
    assert abs(sup["baseline"] - sup["aga"]) > 1e-3
    starts = {c.settings["variant"]: c.config.start_weights() for c in spec.cells()}
    assert starts == {
        "baseline": "pretrained",
        "baseline-reference": "reference",
        "aga": "reference",
    }


def test_a_folder_with_other_settings_is_refused(tmp_path):
    spec = parse_grid({"base": TINY, "grid": {"seed": [0]}})
    assert run_grid(spec, tmp_path / "g", report=False).ok
    other = parse_grid({"base": TINY | {"lr": 0.05}, "grid": {"seed": [0]}})
    with pytest.raises(EntangleValueError, match="lr"):
        run_grid(other, tmp_path / "g", report=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(EntangleValueError, match="not empty"):
        run_grid(spec, tmp_path / "busy", report=False)


def test_report_has_table_figures_and_escaped_names(tmp_path):
    spec = parse_grid(
        {
            "base": TINY,
            "grid": [
                {"variant": ["baseline", "eagc"], "seed": [0, 1]},
                {"variant": ["eagc"], "aga_weight": [1.4], "seed": [0, 1]},
            ],
        },
        source="<grid & co>",
    )
    run = run_grid(spec, tmp_path / "g")
    page = run.files["report"].read_text(encoding="utf-8")
    assert "&lt;grid &amp; co&gt;" in page and "<grid & co>" not in page
    assert page.count("data:image/png;base64,") == 3  # bars, aga_weight sensitivity, steps
    assert "Sensitivity to aga_weight" in page
    # the verdict opens the page and summarises seeds of one setting across seeds
    assert page.index("<h2>Verdict</h2>") < page.index("<table>")
    assert "n = 2 vs 2 seeds" in page  # seed means compared, n on each side
    assert "variant=eagc__aga_weight=1.4__seed=1" in page
    # verdict.json beside report.html: the run report's schema plus the grid's settings
    data = json.loads(run.files["verdict"].read_text(encoding="utf-8"))
    assert run.files["verdict"] == run.files["report"].with_name("verdict.json")
    eagc, base = "variant=eagc__aga_weight=0.7__seed", "variant=baseline__aga_weight=0.7__seed"
    assert data["headline"] == {
        "a": "variant=eagc, aga_weight=0.7 (seeds 0,1)",
        "b": "variant=baseline, aga_weight=0.7 (seeds 0,1)",
    }
    acc = next(c for c in data["comparisons"]
               if (c["a"], c["metric"]) == (data["headline"]["a"], "acc_all_last"))  # fmt: skip
    cells = {r["name"]: r for r in data["runs"]}
    want = np.mean([cells[f"{eagc}={k}"]["acc_all_last"] - cells[f"{base}={k}"]["acc_all_last"]
                    for k in (0, 1)])  # fmt: skip
    assert acc["difference"] == pytest.approx(want) and acc["method"] == "paired t"
    assert (acc["n_a"], acc["n_b"]) == (2, 2) and len(data["card"]) <= 8
    grid = {s["setting"]: s for s in data["grid"]["settings"]}
    assert grid["variant=eagc, aga_weight=1.4 (seeds 0,1)"]["values"] == {
        "variant": "eagc", "aga_weight": 1.4}  # fmt: skip
    assert sorted(grid["variant=baseline, aga_weight=0.7 (seeds 0,1)"]["cells"]) == [
        base + "=0",
        base + "=1",
    ]
    summary = run.files["summary"].read_text(encoding="utf-8")
    assert summary.count("\n| ") == 4  # header + baseline, eagc 0.7, eagc 1.4


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


def test_valid_keys_are_the_trainconfig_fields():
    from dataclasses import fields

    from entangle.gcd.train import TrainConfig

    assert valid_keys() == ["variant"] + [f.name for f in fields(TrainConfig)]


def test_devices_are_assigned_to_workers_in_turn():
    from entangle.ablation.runner import default_devices

    assert default_devices(3, ["cuda:0", "cuda:1"], "auto") == ["cuda:0", "cuda:1", "cuda:0"]
    assert default_devices(2, None, "cpu") == [None, None]  # each cell keeps its config device


def test_table_says_when_a_number_covers_fewer_seeds():
    rows = [
        _row("eagc", 0.7, 0, 0.60, 0.30),
        _row("eagc", 0.7, 1, 0.64, None),  # NaN GDC on this seed
        _row("eagc", 0.7, 2, 0.71, 0.26),
    ]
    groups = aggregate(rows, ["variant"], metrics=METRICS)
    header, body = table(groups, ["variant"])
    gdc = body[0][header.index("GDC (first 200 steps)")]
    assert gdc.endswith("(n=2)")
    assert "(n=" not in body[0][header.index("All")]


def test_cell_row_reads_the_papers_window_as_the_headline(tmp_path):
    from entangle.ablation.results import cell_row
    from entangle.ablation.spec import Cell
    from entangle.gcd.train import TrainConfig

    summary = {"gdc_early": 0.41, "gdc_early_eagc": 0.33, "gdc_mean": 0.2, "gdc_mean_eagc": 0.1}
    summary |= {"soc_early": 0.7, "soc_all": 0.6, "soc": 0.5, "acc_all": 0.9}
    (tmp_path / "DONE").write_text(json.dumps({"summary": summary}))
    cell = Cell(name="c", config=TrainConfig(eagc=True), settings={"variant": "eagc"})
    row = cell_row(cell, tmp_path)
    assert (row["gdc"], row["gdc_raw"], row["soc"]) == (0.33, 0.41, 0.7)
    assert (row["gdc_all"], row["gdc_raw_all"], row["soc_all"]) == (0.1, 0.2, 0.6)
    assert row["soc_last_epoch"] == 0.5
