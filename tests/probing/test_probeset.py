"""ProbeSet: cached-prefix SOC / energies equal a full re-embedding of the same set."""

from __future__ import annotations

import math

import pytest
import torch

from entangle import ProbeSet
from entangle.errors import EntangleValueError
from entangle.probing.probeset import full_embedding, summarize_subspace
from tests.support.toy import ToyBackbone, toy_batch, toy_losses

K, APERTURE = 4, 2.0


def probe_backbone(frozen_blocks: int = 2, seed: int = 0) -> ToyBackbone:
    """float64 toy backbone, 12-d features, stem and ``blocks[:frozen_blocks]`` frozen."""
    torch.manual_seed(seed)
    backbone = ToyBackbone(d_in=6, width=16, depth=4, dim=12).double()
    backbone.stem.requires_grad_(frozen_blocks < 0)
    for block in backbone.blocks[: max(frozen_blocks, 0)]:
        block.requires_grad_(False)
    return backbone


def probe_data(n: int = 60):
    """Inputs ``[n, 6]``, 20 labeled rows, novel = unlabeled rows of classes 3..5."""
    x, _, labeled, novel = toy_batch(n=n, classes=6, n_labeled=20, seed=3)
    return x, labeled, novel


def reference(backbone, x, labeled, novel) -> dict:
    """The paper's definition: re-embed the whole set, then the metrics."""
    return summarize_subspace(full_embedding(backbone, x), labeled, novel, K, APERTURE)


def assert_same(got, want, tol=1e-5, where="result"):
    """Recursive comparison of result trees within ``tol`` (relative and absolute)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same(got[key], want[key], tol, f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, tol, f"{where}[{i}]")
    elif isinstance(want, str):
        assert got == want, where
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == pytest.approx(want, rel=tol, abs=tol), where


def train_suffix(backbone, scale: float = 0.3, seed: int = 1) -> None:
    """Stand-in for optimiser steps: move every trainable parameter in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in backbone.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def make(backbone, **kw) -> ProbeSet:
    x, labeled, novel = probe_data()
    return ProbeSet(backbone, x, labeled, novel, k=K, aperture=APERTURE, batch_size=16, **kw)


class CountCalls:
    """Counts forward calls of a module (the stem: one per prefix re-embedding chunk)."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1


@pytest.mark.parametrize("frozen_blocks", [0, 2, 4])
def test_evaluate_equals_full_reembedding(frozen_blocks):
    backbone = probe_backbone(frozen_blocks)
    x, labeled, novel = probe_data()
    probe_set = make(backbone)
    assert probe_set.split_at == frozen_blocks
    before = probe_set.evaluate(backbone)
    assert_same(before, reference(backbone, x, labeled, novel))
    assert 0 < before["soc"] < 1
    assert all(0 < a < math.pi / 2 for a in before["principal_angles"])

    train_suffix(backbone)
    after = probe_set.evaluate(backbone)
    assert_same(after, reference(backbone, x, labeled, novel))
    # the suffix really moved the numbers: a stale cache of features would be caught
    assert after["soc"] != pytest.approx(before["soc"], rel=1e-3)


def test_exact_mode_equals_full_reembedding():
    backbone = probe_backbone(2)
    x, labeled, novel = probe_data()
    probe_set = make(backbone, exact=True)
    assert probe_set.split_at == 0
    assert_same(probe_set.evaluate(backbone), reference(backbone, x, labeled, novel))
    train_suffix(backbone)
    assert_same(probe_set.evaluate(backbone), reference(backbone, x, labeled, novel))


def test_trainable_stem_splits_at_zero():
    backbone = probe_backbone(-1)
    x, labeled, novel = probe_data()
    probe_set = make(backbone)
    assert probe_set.split_at == 0
    train_suffix(backbone)  # moves the stem too: the prefix cache must follow
    assert_same(probe_set.evaluate(backbone), reference(backbone, x, labeled, novel))


def test_the_prefix_is_embedded_once():
    backbone = probe_backbone(2)
    stem = CountCalls(backbone.stem)
    probe_set = make(backbone)
    built = stem.calls
    assert built == math.ceil(60 / 16)
    for seed in range(3):
        train_suffix(backbone, seed=seed)
        probe_set.evaluate(backbone)
    assert stem.calls == built
    stem.handle.remove()


def _change_prefix(backbone, how: str) -> None:
    linear = backbone.blocks[1][0]
    if how == "in_place":
        with torch.no_grad():
            linear.weight.mul_(1.5)
    elif how == "data_assignment":
        linear.weight.data = linear.weight.detach() * 1.5
    elif how == "new_parameter":
        linear.weight = torch.nn.Parameter(linear.weight.detach() * 1.5, requires_grad=False)
    elif how == "load_state_dict":
        state = backbone.state_dict()
        state["stem.weight"] = state["stem.weight"] * 1.5
        backbone.load_state_dict(state)


@pytest.mark.parametrize("how", ["in_place", "data_assignment", "new_parameter", "load_state_dict"])
def test_cache_follows_a_changed_prefix(how):
    backbone = probe_backbone(2)
    x, labeled, novel = probe_data()
    probe_set = make(backbone)
    before = probe_set.evaluate(backbone)
    _change_prefix(backbone, how)
    after = probe_set.evaluate(backbone)
    assert_same(after, reference(backbone, x, labeled, novel))
    assert after["soc"] != pytest.approx(before["soc"], rel=1e-3)


@pytest.mark.parametrize("name", ["labeled", "novel"])
@pytest.mark.parametrize("bad", [torch.ones(59, dtype=torch.bool), torch.ones(60, 1).bool()])
def test_mask_of_wrong_shape_is_refused(name, bad):
    x, labeled, novel = probe_data()
    masks = {"labeled": labeled, "novel": novel} | {name: bad}
    with pytest.raises(EntangleValueError, match=rf"{name} has shape .* inputs have 60 rows"):
        ProbeSet(probe_backbone(), x, masks["labeled"], masks["novel"])


def test_set_without_labeled_or_novel_samples_is_refused():
    x, labeled, novel = probe_data()
    backbone = probe_backbone()
    with pytest.raises(EntangleValueError, match="got 0 labeled and"):
        ProbeSet(backbone, x, torch.zeros_like(labeled), novel)
    with pytest.raises(EntangleValueError, match=r"got 20 labeled and 0 novel"):
        ProbeSet(backbone, x, labeled, torch.zeros_like(novel))
    # novel rows that are also labeled are not novel-class unlabeled samples
    with pytest.raises(EntangleValueError, match="0 novel"):
        ProbeSet(backbone, x, labeled, labeled.clone())


@pytest.mark.parametrize("exact", [False, True])
def test_train_eval_modes_are_restored(exact):
    backbone = probe_backbone(2)
    probe_set = make(backbone, exact=exact)
    for training in (True, False):
        backbone.train(training)
        probe_set.evaluate(backbone)
        assert all(m.training == training for m in backbone.modules())
    # a frozen prefix kept in eval mode inside a training model stays so
    backbone.train()
    backbone.blocks[0].eval()
    probe_set.evaluate(backbone)
    modes = {name: m.training for name, m in backbone.named_modules()}
    assert not modes["blocks.0"] and not modes["blocks.0.0"]
    assert modes[""] and modes["blocks.1"] and modes["stem"]


def test_modes_are_restored_after_an_error():
    backbone = probe_backbone(2)
    probe_set = make(backbone)
    backbone.train()

    def broken(h):
        raise RuntimeError("pool failed")

    backbone.pool = broken
    with pytest.raises(RuntimeError, match="pool failed"):
        probe_set.evaluate(backbone)
    assert backbone.training and backbone.blocks[3].training


def test_is_due_follows_the_cadence():
    probe_set = make(probe_backbone(), every=5)
    assert [s for s in range(12) if probe_set.is_due(s)] == [0, 5, 10]


def test_is_due_serves_each_multiple_with_the_next_probed_step():
    probe_set = make(probe_backbone(), every=3)
    probed = range(0, 13, 2)  # a Probe with every=2
    due = [s for s in probed if probe_set.is_due(s, probe_every=2)]
    # multiples of 3 in 0..12 are 0, 3, 6, 9, 12: each served once, by the next probed step
    assert due == [0, 4, 6, 10, 12]


class CountingProbeSet(ProbeSet):
    """Counts evaluations (each costs a suffix forward of the whole probe set)."""

    evaluations = 0

    def evaluate(self, backbone=None):
        type(self).evaluations += 1
        return super().evaluate(backbone)


def test_every_evaluation_paid_for_is_recorded():
    from entangle import Probe

    backbone = probe_backbone()
    head = torch.nn.Linear(12, 6).double()
    x, labeled, novel = probe_data()
    probe_set = CountingProbeSet(backbone, x, labeled, novel, k=K, aperture=APERTURE, every=3)
    CountingProbeSet.evaluations = 0
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    probe = Probe(trainable, every=2, probeset=probe_set)
    xb, yb, lab, _ = toy_batch(n=12, classes=6, n_labeled=5, seed=1)
    for _ in range(13):
        sup, unsup, _ = toy_losses(head, backbone(xb), yb, lab)
        probe.backward(sup, unsup)
    recorded = [r["step"] for r in probe.records if "probeset" in r]
    # before: ProbeSet.is_due(step) on every training step paid 5 evaluations, 3 recorded
    assert CountingProbeSet.evaluations == len(recorded) == 5
    assert recorded == [0, 4, 6, 10, 12]


def test_recorded_probeset_equals_an_evaluation_with_the_steps_weights():
    from entangle import Probe

    backbone = probe_backbone()
    head = torch.nn.Linear(12, 6).double()
    x, labeled, novel = probe_data()
    probe_set = make(backbone, every=1)
    want = probe_set.evaluate(backbone)  # weights the forward below uses
    probe = Probe([p for p in backbone.parameters() if p.requires_grad], probeset=probe_set)
    xb, yb, lab, _ = toy_batch(n=12, classes=6, n_labeled=5, seed=1)
    sup, unsup, _ = toy_losses(head, backbone(xb), yb, lab)
    record = probe.backward(sup, unsup)
    assert_same(record["probeset"], want, tol=1e-12)
    assert record["probeset"]["k"] == K
    assert record["probeset"]["conceptor"]["aperture"] == APERTURE
    assert "refit" in record["probeset"]["conceptor"]["source"]


def test_probeset_uses_the_given_k_and_aperture():
    backbone = probe_backbone()
    x, labeled, novel = probe_data()
    a = ProbeSet(backbone, x, labeled, novel, k=2, aperture=0.5).evaluate()
    b = ProbeSet(backbone, x, labeled, novel, k=6, aperture=4.0).evaluate()
    assert len(a["principal_angles"]) == 2 and len(b["principal_angles"]) == 6
    assert a["soc"] < b["soc"]  # a larger known subspace holds more of the novel energy
    assert a["conceptor"]["quota"] < b["conceptor"]["quota"]


def test_summarize_subspace_non_finite_features_give_nan_reason():
    from entangle.probing.probeset import summarize_subspace

    z = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    z[3, 2] = float("nan")
    lab, nov = torch.arange(40) % 2 == 0, torch.arange(40) % 4 == 1
    out = summarize_subspace(z, lab, nov, 3)
    assert "NaN or inf" in out["nan_reason"] and out["soc"] != out["soc"]
