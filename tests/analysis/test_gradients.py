"""analyze's gradient diagnostics: the SimGCD objective at the checkpoint recomputed by hand,
the given objective used, the weights untouched, a reference model enabling AGA."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from entangle.analysis import AnalyzeConfig, analyze, load_inputs
from entangle.analysis.gradients import gradient_diagnostics
from entangle.checkpoints import load_gcd_checkpoint, save_checkpoint
from entangle.errors import EntangleValueError
from entangle.metrics import gradient_conflict
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead
from entangle.probing.params import last_block
from entangle.runs.directory import RunReader, RunWriter
from tests.analysis.digits import SMALL, digits_models


def _first_batch_conflict(config: AnalyzeConfig, loss=None) -> dict:
    """The first probed batch's raw conflict on the last block, recomputed by hand."""
    from entangle.analysis.gradients import view_augment
    from entangle.data.datasets import BalancedBatchSampler, make_batch
    from entangle.gcd.losses import gcd_losses
    from entangle.models.backbones import freeze_prefix

    data = load_inputs("digits", seed=config.seed, max_samples=config.max_samples)
    backbone, head = digits_models()
    freeze_prefix(backbone, 1)
    rows = next(iter(BalancedBatchSampler(data.labeled, config.batch_size, seed=config.seed)))
    gen = torch.Generator().manual_seed(config.seed * 7919 + 1)
    batch = make_batch(data, rows, view_augment(backbone, data), gen)
    proj, logits = head(backbone(batch["views"]))
    sup, unsup, _ = gcd_losses(
        proj, logits, batch["labels"], batch["labeled"], epoch=3.0, config=loss
    )
    params = last_block(backbone)
    g_s = torch.autograd.grad(sup, params, retain_graph=True)
    g_u = torch.autograd.grad(unsup, params)
    return {k: float(v) for k, v in gradient_conflict(list(g_s), list(g_u)).items()}


def test_gradient_records_are_the_simgcd_objective_at_the_checkpoint(digits_run):
    result, config = digits_run
    reader = RunReader(result.analyses[0].run_dir)
    assert len(reader.steps) == config.grad_batches
    for step in reader.steps:
        assert set(step["raw"]) == {"last_block", "all"} and "eagc" in step
        assert -1 <= step["raw"]["last_block"]["cos"] <= 1
        # free energy over SimGCD's softmax logits: the head's cosine logits / 0.1
        assert step["energy"]["free_energy_temperature"] == config.student_temperature == 0.1

    want = _first_batch_conflict(config)
    got = reader.steps[0]["raw"]["last_block"]
    assert got["cos"] == pytest.approx(want["cos"], abs=1e-4)
    assert got["gdc"] == pytest.approx(want["gdc"], abs=1e-4)
    # the objective is recorded: SimGCD's settings, the teacher temperature at epoch 3
    assert reader.config["loss"]["infonce_temperature"] == 1.0
    assert reader.config["teacher_epoch"] == 3.0
    assert reader.config["teacher_temperature"] == pytest.approx(0.07 - 0.03 * 3 / 29)


def test_gradient_diagnostics_use_the_given_objective(tmp_path, digits_ckpt, digits_run):
    from entangle.gcd.losses import LossConfig

    config = AnalyzeConfig(**SMALL | {"grad_batches": 1, "kmeans": False, "eagc": False})
    config = dataclasses.replace(config, infonce_temperature=0.07, sup_weight=0.5)
    (analysis,) = analyze([digits_ckpt], tmp_path, config).analyses
    got = RunReader(analysis.run_dir).steps[0]["raw"]["last_block"]
    loss = LossConfig(infonce_temperature=0.07, sup_weight=0.5)
    want = _first_batch_conflict(config, loss)
    assert got["cos"] == pytest.approx(want["cos"], abs=1e-4)
    default = RunReader(digits_run[0].analyses[0].run_dir).steps[0]["raw"]["last_block"]
    assert abs(got["cos"] - default["cos"]) > 1e-3  # the setting changed the numbers
    assert RunReader(analysis.run_dir).config["loss"] == dataclasses.asdict(loss)


def test_gradient_diagnostics_leave_the_weights_untouched(tmp_path, digits_ckpt):
    loaded = load_gcd_checkpoint(digits_ckpt)
    data = load_inputs("digits", max_samples=120)
    models = (loaded.backbone, loaded.head)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    flags = [p.requires_grad for m in models for p in m.parameters()]
    with RunWriter(tmp_path / "run") as run:
        records = gradient_diagnostics(
            *models, data, run, batches=3, batch_size=16, device=torch.device("cpu")
        )
    assert len(records) == 3
    for m, saved in zip(models, before, strict=True):
        for k, v in m.state_dict().items():
            assert torch.equal(v, saved[k]), k
    assert [p.requires_grad for m in models for p in m.parameters()] == flags
    assert all(p.grad is None for m in models for p in m.parameters())
    assert not loaded.backbone.training and not loaded.head.training


def test_reference_enables_aga_and_a_mismatched_reference_is_refused(tmp_path, digits_ckpt):
    ref = tmp_path / "reference.pt"
    backbone, head = digits_models()
    with torch.no_grad():  # a reference that differs only in the last block: prefix shared
        for p in backbone.blocks[-1].parameters():
            p.add_(0.05)
    save_checkpoint(ref, backbone, head)
    config = AnalyzeConfig(**SMALL | {"reference": str(ref), "grad_batches": 1})
    result = analyze([digits_ckpt], tmp_path / "out", config)
    step = RunReader(result.analyses[0].run_dir).steps[0]
    # AGA moves the corrected supervised gradient: corrected and raw g_S norms differ
    raw, cor = step["raw"]["last_block"], step["eagc"]["last_block"]
    assert cor["norm_sup"] != pytest.approx(raw["norm_sup"], rel=1e-6)

    other = tmp_path / "other.pt"
    save_checkpoint(other, ResidualMLP(in_dim=64, dim=16, depth=2), GCDHead(16, 10))
    config = AnalyzeConfig(**SMALL | {"reference": str(other)})
    with pytest.raises(EntangleValueError, match="reference backbone gives 16-d"):
        analyze([digits_ckpt], tmp_path / "out2", config)
