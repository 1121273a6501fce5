"""import-log --attach: a folder's logged curves and its checkpoint's analysis in one run."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from entangle.errors import EntangleValueError
from entangle.logs import import_log
from entangle.runs.directory import RunReader, RunWriter
from tests.logs.log_samples import SIMGCD_LOG

# CVMI-Lab/SimGCD util/general_utils.py init_experiment: <exp_name>_(dd.mm.yyyy_|_SS.fff)/
# with log.txt and checkpoints/model.pt ({'model', 'optimizer', 'epoch': epoch + 1})
RUN_FOLDER = "simgcd/log/cub_(05.03.2024_|_11.532)"
CLASS_NAMES = [f"class{i}" for i in range(6)]


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / RUN_FOLDER
    (path / "checkpoints").mkdir(parents=True)
    (path / "log.txt").write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    (path / "checkpoints" / "model.pt").write_bytes(b"read by analyze, not by import-log")
    return path


def make_analysis(path, checkpoint, *, epoch: int | None = 1, seed: int = 0):
    """A run directory in the shape `entangle analyze` writes (entangle/analysis/run.py):
    config with checkpoint/format/checkpoint_meta, one evaluation at epoch 0, gradient
    batches as steps 0.., the evaluation's features."""
    rng = np.random.default_rng(seed)
    meta = {"data": "cub"} | ({} if epoch is None else {"epoch": epoch})
    config = {
        "checkpoint": str(checkpoint),
        "format": "simgcd",
        "checkpoint_meta": meta,
        "class_names": CLASS_NAMES,
        "aperture": 2.0,
        "data": "cub:/d/cub",
    }
    with RunWriter(path, config=config, seed=0, device="cpu", name=path.name) as run:
        for step, (gdc, conflict) in enumerate([(0.25, True), (0.75, False)]):
            run.write_step(
                {
                    "step": step,
                    "raw": {"last_block": {"gdc": gdc, "cos": -0.5 * gdc, "conflict": conflict}},
                    "eagc": {"last_block": {"gdc": gdc / 2, "cos": 0.0, "conflict": False}},
                }
            )
        run.write_epoch(
            {
                "epoch": 0,
                "step": 0,
                "acc_all": 0.41,
                "acc_old": 0.5,
                "acc_new": 0.36,
                "acc_protocol": "v2",
                "soc": 0.625,
                "k": 4,
                "principal_angles": [0.1, 0.2],
                "energy": {"unlabeled_new": {"q50": 0.9}},
                "timing": {"features_s": 1.0},
                "notes": ["from analyze"],
            }
        )
        n = 60
        labels = np.repeat(np.arange(6), n // 6)
        run.save_features(
            0,
            features=rng.normal(size=(n, 8)).astype(np.float32) + labels[:, None],
            labels=labels,
            labeled=(labels < 3) & (np.arange(n) % 2 == 0),
            novel=labels >= 3,
        )
        run.finish({})
    return path


def test_the_analysis_joins_the_evaluation_of_its_checkpoints_epoch(folder, tmp_path):
    analysis = make_analysis(tmp_path / "an" / "model", folder / "checkpoints" / "model.pt")
    plain = import_log([folder], tmp_path / "plain")
    result = import_log([folder], tmp_path / "run", attach=[analysis])
    assert result.attached == [(analysis, 1)]
    reader = RunReader(tmp_path / "run")
    by_epoch = {rec["epoch"]: rec for rec in reader.epochs}
    rec = by_epoch[1]
    # the log's evaluation stays; the checkpoint's diagnostics and head accuracy join it
    assert (rec["acc_all"], rec["acc_old"], rec["acc_new"]) == (0.4002, 0.5120, 0.3440)
    assert rec["soc"] == 0.625 and rec["k"] == 4 and rec["principal_angles"] == [0.1, 0.2]
    assert rec["energy"] == {"unlabeled_new": {"q50": 0.9}}
    assert "timing" not in rec and "notes" not in rec
    checkpoint = rec["checkpoint"]
    assert checkpoint["file"] == str(folder / "checkpoints" / "model.pt")
    assert (checkpoint["acc_all"], checkpoint["format"]) == (0.41, "simgcd")
    # the gradient batches are summarised, never training steps
    raw = checkpoint["gradients"]["raw"]["last_block"]
    assert raw == {"gdc": 0.5, "cos": -0.25, "conflict": 0.5}
    assert checkpoint["gradients"]["eagc"]["last_block"]["gdc"] == 0.25
    assert checkpoint["gradients"]["batches"] == 2
    assert reader.steps == RunReader(tmp_path / "plain").steps and plain.steps == result.steps
    assert "soc" not in by_epoch[0]
    # the features: the report's t-SNE and energy of the imported run
    assert reader.feature_epochs() == [1]
    assert reader.features(1)["features"].shape == (60, 8)
    assert reader.config["class_names"] == CLASS_NAMES
    assert reader.config["attached"] == [{"analysis": str(analysis.resolve()), "epoch": 1}]
    (note,) = [n for n in result.notes if "head accuracy" in n]
    assert "All 0.4100" in note and "logged 0.4002" in note


def test_a_checkpoint_without_its_epoch_goes_to_the_last_logged_one_and_says_so(folder, tmp_path):
    analysis = make_analysis(tmp_path / "an" / "model", "model.pt", epoch=None)
    result = import_log([folder], tmp_path / "run", attach=[tmp_path / "an"])  # its --out
    assert result.attached == [(analysis, 1)]
    assert any("does not record its epoch" in n and "epoch 1" in n for n in result.notes)


def test_an_epoch_the_log_does_not_evaluate_gets_a_record_of_its_own(folder, tmp_path):
    analysis = make_analysis(tmp_path / "an" / "model", "model.pt", epoch=7)
    result = import_log([folder], tmp_path / "run", attach=[analysis])
    epochs = RunReader(tmp_path / "run").epochs
    assert [rec["epoch"] for rec in epochs] == [0, 1, 7]
    assert "acc_all" not in epochs[-1] and epochs[-1]["checkpoint"]["acc_all"] == 0.41
    assert RunReader(tmp_path / "run").summary["acc_all"] == 0.4002  # the last logged one
    assert any("does not evaluate" in n for n in result.notes)


def test_what_is_not_one_analyze_run_is_refused_with_what_to_do(folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EntangleValueError, match="entangle analyze FOLDER/checkpoints"):
        import_log([folder], tmp_path / "a", attach=[tmp_path / "empty"])
    make_analysis(tmp_path / "two" / "model", "model.pt")
    make_analysis(tmp_path / "two" / "model_best", "model_best.pt")
    with pytest.raises(EntangleValueError, match="2 analyze runs.*model, model_best"):
        import_log([folder], tmp_path / "b", attach=[tmp_path / "two"])
    with pytest.raises(EntangleValueError, match="two --attach analyses for epoch 1"):
        import_log(
            [folder],
            tmp_path / "c",
            attach=[tmp_path / "two" / "model", tmp_path / "two" / "model_best"],
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_cli_attach_says_where_it_went_and_the_report_draws_the_checkpoint(folder, tmp_path):
    from entangle.cli.app import app
    from entangle.report import build_report

    analysis = make_analysis(tmp_path / "an" / "model", folder / "checkpoints" / "model.pt")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["import-log", str(folder), "--out", str(out), "--attach", str(analysis)]
    )
    assert result.exit_code == 0, result.output
    assert f"attached {analysis} at epoch 1" in " ".join(result.output.split())
    plain = tmp_path / "plain"
    import_log([folder], plain)
    pages = {}
    for run in (out, plain):
        index = build_report([run], tmp_path / f"rep-{run.name}", tsne_max_points=60, workers=1)
        pages[run.name] = index.read_text(encoding="utf-8")
    # the logged curves and the checkpoint's map and energies in one report of one run
    assert "Values from imported training logs" in pages["run"]
    assert 'alt="t-SNE of the saved features"' in pages["run"]
    assert (tmp_path / "rep-run" / "energy_ratio.png").is_file()
    assert "no saved features" not in pages["run"]
    # the log alone has no map: the section says so instead
    assert 'alt="t-SNE of the saved features"' not in pages["plain"]
    assert "not drawn, no run has what it shows (no saved features)" in pages["plain"]


def _summary_rows(page: str) -> dict[str, str]:
    """The report's summary table as ``{row label: the run's cell}`` (one run per report)."""
    import html
    import re

    table = page[page.index('<table class="summary">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<th scope="row">(.*?)</th><td class="num">(.*?)</td>', table)
    return {html.unescape(label): html.unescape(cell) for label, cell in rows}


def test_the_summary_table_shows_the_checkpoints_gradient_batches_labelled(folder, tmp_path):
    from entangle.report import build_report

    analysis = make_analysis(tmp_path / "an" / "model", folder / "checkpoints" / "model.pt")
    import_log([folder], tmp_path / "run", attach=[analysis])
    import_log([folder], tmp_path / "plain")
    pages = {}
    for name in ("run", "plain"):
        index = build_report(
            [tmp_path / name], tmp_path / f"rep-{name}", tsne_max_points=60, workers=1
        )
        pages[name] = index.read_text(encoding="utf-8")
    rows = _summary_rows(pages["run"])
    # make_analysis's batches: raw gdc 0.25 and 0.75, cos -0.125 and -0.375, one conflict
    label = "(checkpoint at epoch 1, 2 gradient batches)"
    assert rows["GDC, raw, whole run"] == f"0.5000 {label}"
    assert rows["Mean cos(g_S, g_U), raw"] == f"-0.2500 {label}"
    assert rows["Conflict rate (cos < 0), raw"] == f"0.5000 {label}"
    assert rows["GDC, EAGC, whole run"] == f"0.2500 {label}"
    # no checkpoint counterpart: not training steps, and the batches' median is not stored
    assert rows["GDC, raw, first 200 training steps"] == "-"
    assert rows["Median cos(g_S, g_U), raw"] == "-" and rows["Probed steps"] == "-"
    note = (
        "run: no probed training steps (imported from a training log); the gradient rows "
        "marked 'checkpoint' are means over the 2 gradient batches entangle analyze measured "
        "at the checkpoint of epoch 1 (import-log --attach), not over training steps"
    )
    assert note in pages["run"].replace("&#39;", "'")
    # the log alone: empty rows, and one line saying why and how to fill them
    plain = _summary_rows(pages["plain"])
    assert plain["GDC, raw, whole run"] == "-" and "GDC, EAGC, whole run" not in plain
    assert "checkpoint" not in " ".join(plain.values())
    assert (
        "plain: no probed training steps (imported from a training log): no gradient or "
        "ProbeSet SOC rows; entangle import-log FOLDER --attach AN"
    ) in pages["plain"].replace("&#39;", "'")


# tests/analysis/digits.py's small settings: a real analysis in seconds
SMALL = {"max_samples": 160, "grad_batches": 2, "batch_size": 24, "tsne": False, "report": False}


def _digits_checkpoint(path, epoch: int):
    """An entangle-format digits model, saved as SimGCD's checkpoints/model.pt would be."""
    import torch

    from entangle.checkpoints import save_checkpoint
    from entangle.models.backbones import ResidualMLP
    from entangle.models.heads import GCDHead

    torch.manual_seed(0)
    backbone = ResidualMLP(in_dim=64, dim=24, depth=2).eval()
    head = GCDHead(24, 10, proj_dim=16, hidden_dim=32).eval()
    save_checkpoint(path, backbone, head, meta={"epoch": epoch})


def test_a_real_analysis_attaches_and_analyze_does_it_in_one_command(folder, tmp_path, monkeypatch):
    """Not a fake of analyze's output: `entangle analyze`'s own run, through --analyze."""
    import dataclasses

    import entangle.analysis as analysis
    from entangle.cli.app import app

    _digits_checkpoint(folder / "checkpoints" / "model.pt", epoch=1)
    real = analysis.analyze
    monkeypatch.setattr(
        analysis,
        "analyze",
        lambda ckpts, out, config, **kw: real(
            ckpts, out, dataclasses.replace(config, **SMALL), **kw
        ),
    )
    out = tmp_path / "runs" / "cub"
    result = CliRunner().invoke(
        app, ["import-log", str(folder), "--out", str(out), "--analyze", "digits"]
    )
    assert result.exit_code == 0, result.output
    analysed = tmp_path / "runs" / "cub-analysis" / "model"
    assert RunReader(analysed).config["checkpoint"] == str(folder / "checkpoints" / "model.pt")
    assert f"attached {analysed} at epoch 1" in " ".join(result.output.split())
    reader = RunReader(out)
    rec = {r["epoch"]: r for r in reader.epochs}[1]
    assert rec["acc_all"] == 0.4002  # the log's
    assert 0.0 <= rec["soc"] <= 1.0 and rec["checkpoint"]["format"] == "entangle"
    gradients = rec["checkpoint"]["gradients"]
    assert gradients["batches"] == 2 and set(gradients["raw"]) >= {"last_block"}
    assert reader.features(1)["features"].shape == (160, 24)
    assert reader.config["class_names"] == [str(c) for c in range(10)]


def test_analyze_without_a_model_checkpoint_says_what_to_do(tmp_path):
    from entangle.cli.app import app

    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "log.txt").write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["import-log", str(tmp_path / "f"), "--out", str(tmp_path / "r"), "--analyze", "digits"],
    )
    assert isinstance(result.exception, EntangleValueError)
    assert "no checkpoints/model.pt" in str(result.exception) and "--attach" in str(
        result.exception
    )
    assert not (tmp_path / "r").exists()
