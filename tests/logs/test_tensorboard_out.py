"""TensorBoard output: tags are the record's key paths; live and exported logs read back."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from entangle import EAGC, Probe, ProbeSet, RunReader, last_block
from entangle.errors import EntangleValueError
from entangle.metrics import conceptor
from entangle.probing.tensorboard import record_scalars
from tests.support.toy import toy_batch, toy_losses, toy_models

HAS_TB = importlib.util.find_spec("tensorboard") is not None


def test_record_scalars_are_key_paths_of_finite_numbers():
    record = {
        "step": 4,
        "epoch": 1,
        "losses": {"sup": 1.5, "unsup": 0.25},
        "raw": {"last_block": {"cos": -0.5, "gdc": 0.75, "conflict": True, "n": 3}},
        "energy": {"eep_weight": {"q50": 0.125, "mean": float("nan")}},
        "probeset": {"soc": 0.5, "principal_angles": [0.1, 0.2]},
        "nan": {"eagc.all": "supervised gradient is zero on this group"},
        "acc_protocol": "v2",
        "missing": None,
        "n_labeled": 10,
        "eagc_mu": 0.875,
    }
    assert dict(record_scalars(record)) == {
        # the step's own numbers share one section, not one section each (issue 22)
        "step/n_labeled": 10.0,
        "step/eagc_mu": 0.875,
        "losses/sup": 1.5,
        "losses/unsup": 0.25,
        "raw/last_block/cos": -0.5,
        "raw/last_block/gdc": 0.75,
        "raw/last_block/conflict": 1.0,
        "raw/last_block/n": 3.0,
        "energy/eep_weight/q50": 0.125,
        "probeset/soc": 0.5,
    }
    # the axis and settings are not series: no epoch/epoch, epoch/step, epoch/k (issue 22)
    evaluation = {"epoch": 2, "step": 40, "k": 16, "acc_all": 0.5, "soc": {"k": 16, "v": 0.1}}
    assert dict(record_scalars(evaluation, "epoch")) == {
        "epoch/acc_all": 0.5,
        "epoch/soc/k": 16.0,
        "epoch/soc/v": 0.1,
    }


def test_a_bad_writer_is_refused_with_what_to_pass():
    from entangle.errors import EntangleTypeError

    backbone, _ = toy_models()
    with pytest.raises(EntangleTypeError, match="SummaryWriter or a log directory"):
        Probe(backbone, tensorboard=42)


@pytest.mark.skipif(HAS_TB, reason="checks the message shown when tensorboard is missing")
def test_without_tensorboard_a_log_dir_says_which_extra(tmp_path):
    backbone, _ = toy_models()
    with pytest.raises(EntangleValueError, match=r"entangle-gcd\[tb\]"):
        Probe(backbone, tensorboard=tmp_path / "tb")


def _train(tmp_path, tensorboard, steps=8, every=2):
    """A toy EAGC run with a ProbeSet and one evaluation; returns the run directory."""
    backbone, head = toy_models()
    backbone.stem.requires_grad_(False)
    x, y, labeled, novel = toy_batch(n=24, n_labeled=10)
    with torch.no_grad():
        feats = backbone(x[labeled])
    eagc = EAGC(conceptor(feats, 1.5), 0.5)
    eagc.aperture = 1.5
    probeset = ProbeSet(backbone, x, labeled, novel, every=4, k=2)
    probe = Probe(
        {"last_block": last_block(backbone)},
        every=every,
        run=tmp_path / "run",
        eagc=eagc,
        probeset=probeset,
        tensorboard=tensorboard,
        histogram_every=2,
    )
    opt = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.01)
    for _ in range(steps):
        z = eagc.coordinate(backbone(x), labeled, None)
        sup, unsup, logits = toy_losses(head, z, y, labeled)
        opt.zero_grad()
        probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits)
        opt.step()
    probe.record_epoch(backbone, head, [(x, y)], labeled=labeled, novel=novel)
    probe.close()
    return tmp_path / "run"


def _read(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    hists = {t: [e.step for e in acc.Histograms(t)] for t in acc.Tags()["histograms"]}
    return scalars, hists


def _expected(run):
    reader = RunReader(run)
    want: dict[str, list] = {}
    for rec in reader.steps:
        for tag, value in record_scalars(rec):
            want.setdefault(tag, []).append((rec["step"], value))
    for rec in reader.epochs:
        for tag, value in record_scalars(rec, "epoch"):
            want.setdefault(tag, []).append((rec["step"], value))
    return want


def _assert_same(scalars, want):
    assert set(scalars) == set(want)
    for tag, points in want.items():
        got = scalars[tag]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        for (_, a), (_, b) in zip(got, points, strict=True):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7), (tag, a, b)


@pytest.mark.extras
def test_live_probe_writes_every_probed_scalar_at_its_step(tmp_path):
    pytest.importorskip("tensorboard")
    run = _train(tmp_path, tmp_path / "tb")
    scalars, hists = _read(tmp_path / "tb")
    for tag in (
        "raw/last_block/cos",
        "raw/last_block/gdc",
        "raw/last_block/norm_ratio",
        "raw/last_block/gms",
        "eagc/last_block/cos",
        "eagc/last_block/gdc",
        "energy/eep_weight/q50",
        "energy/ratio/unlabeled_new/q90",
        "probeset/soc",
        "epoch/acc_all",
        "epoch/soc",
    ):
        assert tag in scalars, tag
    # probed steps 0, 2, 4, 6; the ProbeSet (every 4) on 0 and 4; the evaluation after 8 calls
    assert [s for s, _ in scalars["raw/last_block/cos"]] == [0, 2, 4, 6]
    assert [s for s, _ in scalars["probeset/soc"]] == [0, 4]
    assert [s for s, _ in scalars["epoch/acc_all"]] == [8]
    _assert_same(scalars, _expected(run))
    # histograms on every 2nd probed step: steps 0 and 4
    assert hists["hist/eep_weight/unlabeled"] == [0, 4]
    assert hists["hist/energy_ratio/labeled"] == [0, 4]


@pytest.mark.extras
def test_a_given_writer_is_flushed_not_closed(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    _train(tmp_path, writer, steps=2)
    writer.add_scalar("mine", 1.0, 0)  # still open
    writer.close()
    scalars, _ = _read(tmp_path / "tb")
    assert "mine" in scalars and "raw/last_block/cos" in scalars


@pytest.mark.extras
def test_export_of_a_run_directory_writes_the_same_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from typer.testing import CliRunner

    from entangle.cli.app import app

    run = _train(tmp_path, None)
    result = CliRunner().invoke(
        app, ["export", "tensorboard", str(run), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    scalars, hists = _read(tmp_path / "x" / "run")
    _assert_same(scalars, _expected(run))
    # per-sample energies of the saved feature epoch, at its step
    assert hists["epoch/hist/energy_ratio/unlabeled_new"] == [8]


@pytest.mark.extras
def test_exporting_twice_keeps_one_copy_of_each_series(tmp_path):
    """A second export replaced the first instead of adding a second event file beside it
    (TensorBoard showed every series twice)."""
    pytest.importorskip("tensorboard")
    from entangle.logs import tensorboard_out

    run = _train(tmp_path, None, steps=4)
    for _ in range(2):
        tensorboard_out.export_run(run, tmp_path / "x")
    scalars, _ = _read(tmp_path / "x")
    _assert_same(scalars, _expected(run))  # each step once
    files = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert len(files) == 2 and files[0] == tensorboard_out.EXPORT_MARKER
    assert files[1].startswith("events.out.tfevents.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "x"]  # no temp folder left


@pytest.mark.extras
def test_export_never_replaces_a_folder_it_did_not_write(tmp_path):
    pytest.importorskip("tensorboard")
    from entangle.logs.tensorboard_out import export_run

    run = _train(tmp_path, None, steps=2)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(EntangleValueError, match="not an entangle TensorBoard export"):
        export_run(run, tmp_path / "x")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


def test_overlay_layout_puts_raw_and_applied_on_one_chart_and_only_what_was_written():
    from entangle.probing.tensorboard import overlay_layout

    tags = {
        "raw/last_block/gdc",
        "eagc/last_block/gdc",
        "eagc_authors/last_block/gdc",
        "raw/last_block/cos",  # no applied counterpart: no chart
        "raw/all/gdc",
        "coordinated/all/gdc",
        "feature/unlabeled/cos_mean",
        "feature_eagc/unlabeled/cos_mean",
        "attribution/unsup_rows/sum",
        "attribution_eagc/unsup_rows/sum",
        "attribution/closure",  # a check near 1, not a series to compare
        "attribution_eagc/closure",
        "attribution/unsup_rows/class/cat",
        "attribution_eagc/unsup_rows/class/cat",  # per class: Scalars tab only
        "epoch/acc_all",
        "epoch/acc_old",
        "epoch/acc_new",
        "losses/sup",
    }
    layout = overlay_layout(tags)
    assert list(layout) == [  # TensorBoard's order: the conflict first
        "gradient conflict all: raw vs applied",
        "gradient conflict last_block: raw vs applied",
        "accuracy and losses",
        "feature raw vs EAGC",
        "attribution raw vs EAGC",
    ]
    block = layout["gradient conflict last_block: raw vs applied"]
    assert block == {
        "gdc (raw, eagc, eagc_authors)": [
            "Multiline",
            ["^raw/last_block/gdc$", "^eagc/last_block/gdc$", "^eagc_authors/last_block/gdc$"],
        ]
    }
    assert layout["gradient conflict all: raw vs applied"]["gdc (raw, coordinated)"][1] == [
        "^raw/all/gdc$",
        "^coordinated/all/gdc$",
    ]
    assert list(layout["feature raw vs EAGC"]) == ["unlabeled/cos_mean (raw, eagc)"]
    assert list(layout["attribution raw vs EAGC"]) == ["unsup_rows/sum (raw, eagc)"]
    assert layout["accuracy and losses"] == {
        "accuracy All / Old / New": [
            "Multiline",
            ["^epoch/acc_all$", "^epoch/acc_old$", "^epoch/acc_new$"],
        ]
    }  # losses/unsup was never written: no one-line chart


def _attributed_run(path):
    """A run directory whose steps carry EAGC's mu, raw/EAGC conflict and class attribution."""
    from entangle.runs.directory import RunWriter

    names = ["cat", "dog/wolf", "owl"]
    with RunWriter(path, config={"class_names": names}, seed=0, device="cpu") as run:
        for step in range(3):
            share = [-0.25 * (step + 1), 0.125, 0.0]
            run.write_step(
                {
                    "step": step,
                    "epoch": 0,
                    "n_labeled": 8,
                    "eagc_mu": 0.5 + step / 8,
                    "raw": {"last_block": {"gdc": 0.5, "cos": -0.25}},
                    "eagc": {"last_block": {"gdc": 0.25, "cos": -0.125}},
                    "attribution": {
                        "unsup_rows": {
                            "sum": sum(share),
                            "class": share,
                            "class_rows": [4.0, 2.0, 0.0],
                        }
                    },
                }
            )
        run.write_epoch(
            {"epoch": 0, "step": 3, "k": 4, "acc_all": 0.5, "acc_old": 0.75, "acc_new": 0.25}
        )
        run.finish({})
    return path


@pytest.mark.extras
def test_export_names_classes_groups_singletons_and_overlays_raw_with_eagc(tmp_path):
    """Read back as TensorBoard reads it (issue 22: raw and EAGC in separate sections, no
    per-class attribution, epoch/epoch exported)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from entangle.logs.tensorboard_out import export_run

    run = _attributed_run(tmp_path / "run")
    export_run(run, tmp_path / "tb")
    scalars, _ = _read(tmp_path / "tb")
    assert scalars["attribution/unsup_rows/class/cat"] == [(0, -0.25), (1, -0.5), (2, -0.75)]
    assert scalars["attribution/unsup_rows/class/dog_wolf"][0] == (0, 0.125)
    assert scalars["attribution/unsup_rows/class_per_row/cat"][2] == (2, -0.75 / 4)
    assert "attribution/unsup_rows/class_per_row/owl" not in scalars  # no rows, no mean
    assert [s for s, _ in scalars["step/eagc_mu"]] == [0, 1, 2]
    assert "step/n_labeled" in scalars and "n_labeled" not in scalars
    assert not {"epoch/epoch", "epoch/step", "epoch/k"} & set(scalars)
    assert scalars["epoch/acc_old"] == [(3, 0.75)]

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    (event,) = acc.Tensors("custom_scalars__config__")  # one layout per run folder
    layout = layout_pb2.Layout()
    layout.ParseFromString(event.tensor_proto.string_val[0])
    charts = {
        chart.title: list(chart.multiline.tag)
        for category in layout.category
        for chart in category.chart
    }
    assert charts["gdc (raw, eagc)"] == ["^raw/last_block/gdc$", "^eagc/last_block/gdc$"]
    assert charts["cos (raw, eagc)"] == ["^raw/last_block/cos$", "^eagc/last_block/cos$"]
    assert charts["accuracy All / Old / New"] == [
        "^epoch/acc_all$",
        "^epoch/acc_old$",
        "^epoch/acc_new$",
    ]
    for regexes in charts.values():  # every regex names a series that was written
        for regex in regexes:
            assert regex[1:-1].replace("\\", "") in scalars, regex
