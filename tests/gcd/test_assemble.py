"""entangle.gcd.assemble: a run's objects built in the recipe's order, resume and AMP settings."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from entangle.checkpoints import CheckpointError
from entangle.gcd.assemble import _resume_from, amp_context, assemble
from entangle.gcd.config import TrainConfig
from entangle.gcd.ranks import Ranks
from entangle.gcd.setup import prepare
from entangle.runs.directory import RunWriter

TINY = TrainConfig(
    data="synthetic",
    epochs=1,
    batch_size=64,
    pretrain_epochs=0,
    reference_epochs=1,
    probeset_size=64,
    device="cpu",
)


@pytest.fixture(scope="module")
def setup():
    return prepare(TINY)


def _assemble(config, setup, path):
    run = RunWriter(path, config={})
    return run, assemble(config, setup, run, resume=False, ranks=Ranks.current(config, 1))


def test_a_baseline_run_owns_copies_and_writes_its_calibration_once(setup, tmp_path):
    run, built = _assemble(TINY, setup, tmp_path / "r")
    with run:
        assert built.eagc is None and built.start_epoch == 0
        assert built.backbone is not setup.backbone
        for mine, theirs in zip(
            built.backbone.parameters(), setup.backbone.parameters(), strict=True
        ):
            assert torch.equal(mine, theirs) and mine is not theirs
        assert built.steps_per_epoch == len(built.samplers[0]) > 0
        assert run.meta["calibration"]["source"].startswith("starting backbone")
        assert run.meta["calibration"]["aperture"] == TINY.aperture
        assert "conceptor" in run.meta
        assert built.scaler is None and built.watch.read() == 0
        assert built.opt.param_groups[0]["lr"] == pytest.approx(TINY.lr)


def test_an_eagc_run_fits_eagc_on_the_reference_and_starts_from_it(setup, tmp_path):
    config = dataclasses.replace(TINY, eagc=True)
    run, built = _assemble(config, setup, tmp_path / "r")
    with run:
        assert built.eagc is not None and built.probe is not None
        assert run.checkpoint_path("reference").exists()
        assert run.meta["calibration"]["source"] == "reference model, labeled training set"
        assert config.start_weights() == "reference"


def test_resume_from_a_checkpoint_that_does_not_fit_says_what_to_do(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"backbone": {"nope": torch.zeros(1)}, "epoch": 0}, path)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(CheckpointError, match="does not fit this run .*delete it"):
        _resume_from(path, model, model, opt, sched, None)


def test_resume_from_loads_every_state_and_returns_the_next_epoch(tmp_path):
    model, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    opt.step()
    sched.step()
    path = tmp_path / "last.pt"
    state = {
        "backbone": model.state_dict(),
        "head": head.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": 4,
    }
    torch.save(state, path)
    model2, head2 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    opt2 = torch.optim.SGD([*model2.parameters(), *head2.parameters()], lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 1, gamma=0.5)
    assert _resume_from(path, model2, head2, opt2, sched2, None) == 5
    assert torch.equal(model2.weight, model.weight) and torch.equal(head2.bias, head.bias)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.05)


def test_amp_context_per_setting():
    cpu = torch.device("cpu")
    factory, scaler = amp_context("off", cpu)
    assert scaler is None
    with factory():
        assert not torch.is_autocast_enabled("cpu")
    factory, scaler = amp_context("bf16", cpu)
    assert scaler is None
    with factory():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    factory, scaler = amp_context("fp16", cpu)
    assert isinstance(scaler, torch.amp.GradScaler)
    with factory():
        assert torch.get_autocast_dtype("cpu") == torch.float16
