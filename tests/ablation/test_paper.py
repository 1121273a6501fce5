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


def _fake_grid(tmp_path):
    """A finished simgcd-cub grid's rows and run dirs: 4 variants x 3 seeds, made-up numbers."""
    from entangle.ablation.cell import cells_dir
    from entangle.runs.directory import RunWriter

    rows = []
    for v, variant in enumerate(("baseline", "eagc", "aga", "eep")):
        for seed in (0, 1, 2):
            cell = f"variant={variant}__seed={seed}"
            acc = 0.6 + 0.01 * v + 0.002 * seed
            rows.append(
                {"cell": cell, "status": "done", "variant": variant, "seed": seed,
                 "acc_all": acc, "acc_old": acc + 0.05, "acc_new": acc - 0.03,
                 "gdc": 0.9, "gdc_raw": 0.9, "soc": 0.5 + 0.01 * seed}
            )  # fmt: skip
            kind = "raw" if variant == "baseline" else "eagc_authors"
            with RunWriter(cells_dir(tmp_path) / cell, config={}) as run:
                for step in (0, 100, 199, 200):  # step 200 is outside the authors' window
                    gdc = 5.0 if step == 200 else 0.1 * (v + 1) + 0.01 * seed + step * 1e-4
                    run.write_step({"step": step, kind: {"last_block": {"gdc": gdc}}})
    return rows


def test_paper_table_sets_the_readme_numbers_beside_the_seed_means(monkeypatch, tmp_path):
    import numpy as np
    from scipy import stats

    import entangle.ablation.report as report_module
    from entangle.ablation.paper import PAPER_DIAGNOSE, paper_dataset
    from entangle.ablation.report import ablation_report
    from entangle.ablation.results import aggregate

    monkeypatch.setattr(report_module, "bars_figure", lambda groups: "bars")
    monkeypatch.setattr(report_module, "steps_figure", lambda curves: "steps")
    monkeypatch.setattr(report_module, "_png", lambda fig: "PNG")
    monkeypatch.setattr(report_module, "grid_verdict", lambda groups, out: None)
    spec = paper_grid("simgcd-cub", "/data/cub")
    assert paper_dataset(spec) == "cub"
    rows = _fake_grid(tmp_path)
    page = ablation_report(spec, [], rows, aggregate(rows, ["variant"]), ["variant"], tmp_path)
    assert "<h2>This run vs the paper</h2>" in page
    table = page[page.index("This run vs the paper") : page.index("Where the definitions")]
    # typed from HaiyangZheng/EAGC README.md (EAGC: All 66.5 / Old 71.0 / New 64.3, GDC
    # 0.1525, SOC 0.4923) and CVMI-Lab/SimGCD README.md (CUB: 60.3±0.1 / 65.6±0.9 / 57.7±0.4)
    for published in ("66.5", "71.0", "64.3", "0.1525", "0.4923", "60.3 ± 0.1", "0.2669"):
        assert f"<td class=n>{published}</td>" in table
    assert PAPER_DIAGNOSE["cub"]["baseline"] == (0.2669, 0.6478)
    # EAGC row: its seed mean of All and the 95% t interval, computed here independently
    acc = np.array([0.61, 0.612, 0.614]) * 100
    half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / np.sqrt(3)
    assert f"{acc.mean():.1f} [{acc.mean() - half:.1f}, {acc.mean() + half:.1f}] (n=3)" in table
    # the authors' GDC from the step records: steps < 200 only (the 5.0 at step 200 is out)
    gdc = np.mean([np.mean([0.2 + 0.01 * s + t * 1e-4 for t in (0, 100, 199)]) for s in range(3)])
    assert f"{gdc:.4f} [" in table
    assert "AGA only / EEP only: no numbers" in page and "compute_soc" in page


def test_a_grid_that_is_not_a_paper_grid_has_no_paper_table(tmp_path):
    from entangle.ablation.paper import comparison_table, paper_dataset
    from entangle.ablation.spec import parse_grid

    assert paper_dataset(parse_grid({"base": {}, "grid": {"seed": [0]}}, source="g.toml")) is None
    # a dataset without Diagnose numbers (CIFAR-100) shows "-" there, accuracies still typed
    table = comparison_table("cifar100", [], {})
    eagc = next(r for r in table["body"] if r[0] == "eagc")
    assert eagc[2] == "83.1" and eagc[8] == "-" and eagc[3] == "-"


def test_dinov2_grid_uses_the_dinov2_preset_and_readme_table():
    from entangle.ablation.paper import comparison_table, paper_dataset

    spec = paper_grid("simgcd-dinov2-aircraft", "/data/air")
    assert paper_dataset(spec) == "dinov2-aircraft"
    cells = spec.cells()
    assert len(cells) == 12
    assert {c.config.model for c in cells} == {"vit-b14-reg4-dinov2"}
    assert {c.config.data for c in cells} == {"aircraft:/data/air"}
    assert {(c.config.preset, c.config.eep_weight) for c in cells} == {("eagc-dinov2", 0.5)}
    # HaiyangZheng/EAGC README.md, DINOv2 Backbone Results, SimGCD / Aircraft:
    # baseline All 63.9 / Old 69.9 / New 60.9, + EAGC All 74.6 / Old 74.9 / New 74.4
    body = {r[0]: r for r in comparison_table("dinov2-aircraft", [], {})["body"]}
    assert [body["baseline"][i] for i in (2, 4, 6)] == ["63.9", "69.9", "60.9"]
    assert [body["eagc"][i] for i in (2, 4, 6)] == ["74.6", "74.9", "74.4"]
    assert body["eagc"][8] == "-"  # no DINOv2 GDC published
