"""The training loop: determinism, resume after a crash, planted overlap, bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from entangle.errors import EntangleValueError
from entangle.gcd.train import WALL_CLOCK_KEYS, TrainConfig, prepare, train
from entangle.runs.directory import RunReader

TINY = TrainConfig(
    data="synthetic",
    epochs=2,
    batch_size=64,
    pretrain_epochs=0,
    reference_epochs=2,
    probeset_every=3,
    probeset_size=200,
    soc_k=4,
    device="cpu",
    save_features=True,
)


@pytest.fixture(scope="module")
def setup():
    return prepare(TINY)


def _numbers(records):
    """The records without wall-clock-dependent fields."""
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in records]


def test_same_seed_same_records(setup, tmp_path):
    a = train(TINY, tmp_path / "a", setup)
    b = train(TINY, tmp_path / "b", setup)
    ra, rb = RunReader(tmp_path / "a"), RunReader(tmp_path / "b")
    assert ra.complete and len(ra.epochs) == 2 and len(ra.steps) > 2
    assert {"losses", "raw", "feature", "energy"} <= set(ra.steps[0])
    assert any("probeset" in s for s in ra.steps)
    assert _numbers(ra.steps) == _numbers(rb.steps)
    assert _numbers(ra.epochs) == _numbers(rb.epochs)
    assert a == b
    # the comparison can fail: another seed (sampler and views) gives other records
    train(dataclasses.replace(TINY, seed=1, epochs=1), tmp_path / "c", setup)
    rc = RunReader(tmp_path / "c")
    first = [r["raw"]["last_block"]["cos"] for r in (ra.steps[0], rc.steps[0])]
    assert first[0] != first[1]
    assert len({s["raw"]["last_block"]["cos"] for s in ra.steps}) == len(ra.steps)


def test_eagc_run_records_corrected_metrics(setup, tmp_path):
    import numpy as np

    cfg = dataclasses.replace(TINY, eagc=True, epochs=1)
    summary = train(cfg, tmp_path / "e", setup)
    steps = RunReader(tmp_path / "e").steps
    raw = np.array([s["raw"]["last_block"]["cos"] for s in steps])
    corrected = np.array([s["eagc"]["last_block"]["cos"] for s in steps])
    # the corrected gradients are measured, not copied from the raw ones
    assert np.isfinite(corrected).all() and np.mean(np.abs(corrected - raw) > 1e-6) > 0.5
    assert summary["cos_mean_eagc"] == pytest.approx(corrected.mean())
    for s in steps:
        w = s["energy"]["eep_weight"]
        assert 0.0 <= w["q10"] <= w["q90"] <= cfg.eep_weight + 1e-9
        assert w["n"] == 2 * cfg.batch_size - s["n_labeled"]  # unlabeled rows of both views

    # a correction that does nothing (AGA off, EEP weight 0) must record corrected == raw
    idle = dataclasses.replace(cfg, aga=False, adaptive=False, eep_weight=0.0)
    train(idle, tmp_path / "idle", setup)
    for s in RunReader(tmp_path / "idle").steps:
        for key in ("cos", "gdc", "norm_sup", "norm_unsup"):
            assert s["eagc"]["last_block"][key] == pytest.approx(
                s["raw"]["last_block"][key], rel=1e-5, abs=1e-7
            ), key


def test_eagc_auto_aperture_calibration_and_attribution_are_recorded(setup, tmp_path):
    cfg = dataclasses.replace(TINY, eagc=True, epochs=1, aperture="auto", attribution=2)
    train(cfg, tmp_path / "auto", setup)
    reader = RunReader(tmp_path / "auto")
    cal = reader.meta["calibration"]
    assert reader.config["aperture"] == "auto" and cal["requested"] == "auto"
    assert cal["aperture"] == pytest.approx(cal["auto_aperture"])
    assert {"gap", "share_active", "mean_weight", "quota", "inert"} <= set(cal["at_aperture"])
    # auto compared the reference's labeled features with every unlabeled training row
    assert cal["auto_unlabeled"] == "unlabeled training rows"
    assert cal["jaeger_aperture"] > 0 and cal["jaeger_aperture"] != cal["auto_aperture"]
    authors = [s["eagc_authors_weights"] for s in reader.steps]
    assert authors[0] == "none" and set(authors[1:]) <= {"previous", "none"}
    assert all("gdc" in s["eagc_authors"]["last_block"] for s in reader.steps)
    steps = reader.steps
    attributed = [s for s in steps if "attribution" in s]
    assert len(attributed) == (len(steps) + 1) // 2
    first = attributed[0]
    assert first["attribution"]["unsup_rows"]["sum"] == pytest.approx(
        first["raw"]["last_block"]["cos"], rel=1e-4, abs=1e-6
    )
    assert "attribution_eagc" in first
    assert 0 <= steps[0]["energy"]["eep_weight"]["frac_active"] <= 1


class Crash(Exception):
    pass


def test_resume_after_crash_matches_uninterrupted(setup, tmp_path):
    train(TINY, tmp_path / "whole", setup)

    def crash(step, total, loss):
        if step == total - 3:  # mid second epoch, after the first epoch's checkpoint
            raise Crash

    with pytest.raises(Crash):
        train(TINY, tmp_path / "cut", setup, on_step=crash)
    assert not RunReader(tmp_path / "cut").complete
    train(TINY, tmp_path / "cut", setup)
    whole, cut = RunReader(tmp_path / "whole"), RunReader(tmp_path / "cut")
    assert cut.complete
    assert _numbers(cut.steps) == _numbers(whole.steps)
    assert _numbers(cut.epochs) == _numbers(whole.epochs)


def test_probe_soc_follows_planted_overlap(tmp_path):
    socs = {}
    for overlap in (0.0, 1.0):
        cfg = dataclasses.replace(TINY, synthetic_overlap=overlap, epochs=1)
        train(cfg, tmp_path / f"o{overlap}", prepare(cfg))
        first = next(s for s in RunReader(tmp_path / f"o{overlap}").steps if "probeset" in s)
        socs[overlap] = first["probeset"]["soc"]
    assert socs[0.0] < 0.5 < socs[1.0]


def test_bad_config_values():
    with pytest.raises(EntangleValueError, match=r"\(0, 1\]"):
        TrainConfig(labeled_fraction=0.0)
    with pytest.raises(EntangleValueError, match="unknown data source"):
        prepare(dataclasses.replace(TINY, data="mnist"))
    with pytest.raises(EntangleValueError, match="'auto'"):
        TrainConfig(aperture=-1.0)
    assert TrainConfig(aperture="3").aperture == 3.0
    assert TrainConfig(aperture="AUTO").aperture == "auto"
    assert TrainConfig(aperture="Jaeger").aperture == "jaeger"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "nope"], "unknown data source"),
        (["--labeled-fraction", "1.5"], "labeled_fraction"),
        (["--data", "digits", "--old-classes", "3,42"], "42"),
        (["--data", "imagefolder:{tmp}"], "image"),
        (["--accuracy", "v3"], "comma list of v1, v2, v2b"),
        (["--aperture", "big"], "positive number, 'auto' or 'jaeger'"),
        (["--attribution", "-1"], "attribution must be >= 0"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from entangle.cli.app import main; main()",
            "train",
            str(tmp_path / "run"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_checkpoints_load_in_analyze(setup, tmp_path):
    from entangle.analysis import AnalyzeConfig, analyze

    cfg = dataclasses.replace(TINY, eagc=True, epochs=1)
    train(cfg, tmp_path / "run", setup)
    ckpt = tmp_path / "run" / "checkpoints"
    config = AnalyzeConfig(
        data="synthetic",
        reference=str(ckpt / "reference.pt"),
        grad_batches=1,
        tsne=False,
        report=False,
        device="cpu",
        soc_k=4,
    )
    result = analyze([ckpt / "model.pt"], tmp_path / "analysis", config)
    (only,) = result.analyses
    assert only.format == "entangle"
    # the analysed model is the trained one: its accuracy equals the run's last evaluation
    last = RunReader(tmp_path / "run").epochs[-1]
    assert only.summary["acc_all"] == pytest.approx(last["acc_all"])
    # the run's objective is SimGCD's: no note; analysed with another one, a note says so
    assert not any("another objective" in n for n in only.notes)
    other = dataclasses.replace(config, infonce_temperature=0.5)
    (noted,) = analyze([ckpt / "model.pt"], tmp_path / "analysis2", other).analyses
    (note,) = [n for n in noted.notes if "another objective" in n]
    assert "infonce_temperature 1.0 (gradients use 0.5)" in note


def test_resume_with_other_settings_is_refused(setup, tmp_path):
    train(dataclasses.replace(TINY, epochs=1), tmp_path / "r", setup)
    (tmp_path / "r" / "DONE").unlink()  # pretend it was interrupted
    with pytest.raises(EntangleValueError, match="eagc"):
        train(dataclasses.replace(TINY, epochs=1, eagc=True), tmp_path / "r", setup)


def test_bad_reference_file_is_a_clear_error(tmp_path):
    setup = prepare(TINY)  # a fresh setup: the shared one caches a trained reference
    bad = tmp_path / "ref.pt"
    bad.write_bytes(b"not a checkpoint")
    cfg = dataclasses.replace(TINY, eagc=True, epochs=1, reference=str(bad))
    with pytest.raises(EntangleValueError, match="ref.pt"):
        train(cfg, tmp_path / "r", setup)
    missing = dataclasses.replace(cfg, reference=str(tmp_path / "nope.pt"))
    with pytest.raises(EntangleValueError, match="nope.pt"):
        train(missing, tmp_path / "r2", prepare(TINY))


def test_summary_counts_nan_steps(setup, tmp_path, monkeypatch):
    import math

    import entangle.gcd.train as recipe

    clean = train(dataclasses.replace(TINY, epochs=1), tmp_path / "clean", setup)
    assert clean["nan_steps"] == 0 and clean["steps_probed"] > 2
    # plant steps whose supervised loss is zero: g_S = 0, so their cosine and GDC are NaN
    real, calls = recipe.gcd_losses, []

    def every_third_sup_zero(*args, **kwargs):
        sup, unsup, parts = real(*args, **kwargs)
        calls.append(len(calls))
        return (sup * 0 if len(calls) % 3 == 1 else sup), unsup, parts

    monkeypatch.setattr(recipe, "gcd_losses", every_third_sup_zero)
    summary = train(dataclasses.replace(TINY, epochs=1), tmp_path / "r", setup)
    steps = RunReader(tmp_path / "r").steps
    planted = [s["step"] for s in steps if s["step"] % 3 == 0]
    assert summary["steps_probed"] == len(steps) == clean["steps_probed"]
    assert summary["nan_steps"] == len(planted) > 0
    for s in steps:
        cos = s["raw"]["last_block"]["cos"]  # NaN is stored as JSON null
        assert (cos is None or math.isnan(cos)) == (s["step"] in planted)
        assert (s["step"] in planted) == bool(s["nan"])
    # the NaN steps are left out of the means, not counted as "no conflict"
    finite = [s["raw"]["last_block"]["cos"] for s in steps if s["step"] not in planted]
    assert summary["cos_mean"] == pytest.approx(sum(finite) / len(finite))
    assert summary["conflict_rate"] == pytest.approx(sum(c < 0 for c in finite) / len(finite))


def test_every_accuracy_protocol_is_recorded_per_evaluation(setup, tmp_path):
    from entangle.metrics import cluster_accuracy

    config = dataclasses.replace(TINY, epochs=1, accuracy="v2b, v1,v2")
    assert config.accuracy == ("v2b", "v1", "v2")
    train(config, tmp_path / "run", setup)
    reader = RunReader(tmp_path / "run")
    (epoch,) = reader.epochs
    assert epoch["acc_protocol"] == "v2b" and list(epoch["acc_protocols"]) == ["v2b", "v1", "v2"]
    saved = reader.features(0)
    unl = ~saved["labeled"]
    pred = saved["logits"].argmax(1)[unl]
    for protocol, acc in epoch["acc_protocols"].items():
        want = cluster_accuracy(saved["labels"][unl], pred, ~saved["novel"][unl], protocol)
        assert (acc["all"], acc["old"], acc["new"]) == pytest.approx(want)
    assert epoch["acc_all"] == epoch["acc_protocols"]["v2b"]["all"]
    assert reader.summary["acc_protocol"] == "v2b"  # the DONE summary names it too


def test_optimiser_is_simgcds_and_steps_its_schedule_per_epoch(setup, tmp_path):
    import math

    import torch

    train(TINY, tmp_path / "r", setup)
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    decayed, plain = state["optimizer"]["param_groups"]
    assert decayed["weight_decay"] == TINY.weight_decay and plain["weight_decay"] == 0.0
    # one scheduler step per epoch, cosine to lr * 1e-3 (CVMI-Lab/SimGCD train.py)
    assert state["scheduler"]["last_epoch"] == TINY.epochs
    eta_min = TINY.lr * 1e-3
    want = eta_min + (TINY.lr - eta_min) * (1 + math.cos(math.pi * TINY.epochs / TINY.epochs)) / 2
    assert decayed["lr"] == pytest.approx(want)
    assert RunReader(tmp_path / "r").config["loss"]["infonce_temperature"] == 1.0


def test_eagc_starts_from_the_reference_model_so_step_0_has_no_aga_pull(setup, tmp_path):
    # AGA alone, strong: any distance between live and reference features shows in step 0
    warm = dataclasses.replace(TINY, eagc=True, eep=False, epochs=1, aga_weight=50.0)
    cold = dataclasses.replace(warm, start="pretrained")
    train(warm, tmp_path / "warm", setup)
    train(cold, tmp_path / "cold", setup)
    w, c = RunReader(tmp_path / "warm"), RunReader(tmp_path / "cold")
    assert (w.config["start"], c.config["start"]) == ("reference", "pretrained")
    assert (w.config["variant"], c.config["variant"]) == ("aga", "aga-pretrained")
    w0, c0 = w.steps[0], c.steps[0]
    # the authors' warm start: z == z_ref at step 0, so the corrected gradient is the raw one
    assert w0["eagc"]["last_block"]["cos"] == pytest.approx(w0["raw"]["last_block"]["cos"])
    assert w0["eagc"]["last_block"]["gdc"] == pytest.approx(w0["raw"]["last_block"]["gdc"])
    # from the pretrained weights the same pull is far from zero
    assert abs(c0["eagc"]["last_block"]["cos"] - c0["raw"]["last_block"]["cos"]) > 1e-2


def test_every_eagc_step_records_mu_and_it_follows_the_labeled_energy(setup, tmp_path):
    cfg = dataclasses.replace(TINY, eagc=True, epochs=1)
    train(cfg, tmp_path / "e", setup)
    steps = RunReader(tmp_path / "e").steps
    mus = [s["eagc_mu"] for s in steps]
    assert len(mus) == len(steps) and all(0 < m <= 1 for m in mus)
    # mu's EMA (momentum 0.95) moves towards each step's labeled energy, before the weights
    for prev, step in zip(steps, steps[1:], strict=False):
        labeled = step["energy"]["ratio"]["labeled"]["mean"]
        want = cfg.momentum_mu * prev["eagc_mu"] + (1 - cfg.momentum_mu) * labeled
        assert step["eagc_mu"] == pytest.approx(want, rel=1e-6)
    assert "eagc_mu" not in RunReader(tmp_path / "e").steps[0]["energy"]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_records_throughput(setup, tmp_path, amp):
    # fp16: the GradScaler path (scaled loss through EAGC-free Probe, scaler.step)
    train(dataclasses.replace(TINY, amp=amp, epochs=1), tmp_path / amp, setup)
    (record,) = RunReader(tmp_path / amp).epochs
    assert record["train_images_per_s"] > 0 and record["train_step_s"] > 0
    assert record["peak_gpu_memory_mib"] is None  # CPU run
    with pytest.raises(EntangleValueError, match="amp must be"):
        dataclasses.replace(TINY, amp="fp8")


def test_a_run_with_head_mlp_layers_resumes_and_loads_with_the_same_head(tmp_path):
    from torch import nn

    from entangle.checkpoints import load_gcd_checkpoint
    from entangle.models.heads import GCDHead, ReLUMLP

    cfg = dataclasses.replace(TINY, head_mlp_layers=1, lr_head=0.5, eagc=True)
    setup = prepare(cfg)
    train(cfg, tmp_path / "whole", setup)

    def crash(step, total, loss):
        if step == total - 3:  # mid second epoch: last.pt holds the MLP_Head's weights
            raise Crash

    with pytest.raises(Crash):
        train(cfg, tmp_path / "cut", setup, on_step=crash)
    train(cfg, tmp_path / "cut", setup)
    whole, cut = RunReader(tmp_path / "whole"), RunReader(tmp_path / "cut")
    assert cut.complete and _numbers(cut.epochs) == _numbers(whole.epochs)
    assert whole.config["head_mlp_layers"] == 1 and whole.config["lr_head"] == 0.5
    # analyze's loader rebuilds Sequential(ReLUMLP, GCDHead) from the tensors, strictly
    loaded = load_gcd_checkpoint(tmp_path / "cut" / "checkpoints" / "model.pt")
    head = loaded.head
    assert isinstance(head, nn.Sequential) and isinstance(head[0], ReLUMLP)
    assert isinstance(head[1], GCDHead) and head[1].config["nlayers"] == 3
    saved = torch.load(tmp_path / "whole" / "checkpoints" / "model.pt", weights_only=True)
    assert head.state_dict().keys() == saved["head"].keys()
    assert all(torch.equal(head.state_dict()[k], v) for k, v in saved["head"].items())
    # the same run asked to resume without the setting is refused, naming it
    (tmp_path / "cut" / "DONE").unlink()
    with pytest.raises(EntangleValueError, match="head_mlp_layers"):
        train(dataclasses.replace(cfg, head_mlp_layers=0), tmp_path / "cut", setup)
