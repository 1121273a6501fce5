"""record_epoch / epoch_record: one evaluation, checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entangle import Probe, RunReader
from entangle.data.datasets import load_source
from entangle.errors import EntangleValueError
from entangle.gcd.evaluate import evaluate
from entangle.metrics import cluster_accuracy
from entangle.probing.probeset import summarize_subspace
from tests.support.toy import toy_models


def _planted(n=60, seed=0):
    """Rows of 4 classes (0, 1 old; 2, 3 novel); the first 20 rows are labeled old rows."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.tensor([0, 1] * 10), torch.randint(0, 4, (n - 20,), generator=g)])
    x = torch.randn(n, 6, generator=g, dtype=torch.float64) + y[:, None].double()
    labeled = torch.arange(n) < 20
    return x, y, labeled


def _loader(x, y, labeled, batch=16, simgcd=False):
    """Batches in a fixed order; SimGCD-style ones are (views, labels, uq_idxs, mask_lab[b, 1])."""
    out = []
    for s in range(0, len(y), batch):
        rows = slice(s, s + batch)
        if simgcd:
            idx = torch.arange(len(y))[rows]
            out.append(([x[rows], x[rows] + 1], y[rows], idx, labeled[rows, None].long()))
        else:
            out.append((x[rows], y[rows]))
    return out


def test_record_epoch_equals_direct_computation(tmp_path):
    backbone, head = toy_models()
    x, y, labeled = _planted()
    probe = Probe(backbone, run=tmp_path / "run")
    record = probe.record_epoch(
        backbone, head, _loader(x, y, labeled), labeled=labeled, old_classes=2
    )
    with torch.no_grad():
        z, logits = backbone(x).float(), head(backbone(x)).float()
    unl = ~labeled
    novel = y >= 2
    want = cluster_accuracy(y[unl], logits.argmax(1)[unl], ~novel[unl])
    assert (record["acc_all"], record["acc_old"], record["acc_new"]) == pytest.approx(want)
    assert record["acc_protocol"] == "v2" and list(record["acc_protocols"]) == ["v2"]
    assert record["k"] == 5  # the toy features are 5-d: k = 16 is capped at their rank
    direct = summarize_subspace(z, labeled, novel & unl, 5, 2.0)
    assert record["soc"] == pytest.approx(direct["soc"], abs=1e-6)
    for group in ("labeled", "unlabeled_old", "unlabeled_new"):
        assert record["energy"][group]["mean"] == pytest.approx(
            direct["energy"][group]["mean"], abs=1e-6
        )
    assert record["epoch"] == 0 and record["step"] == 0
    probe.close()
    reader = RunReader(tmp_path / "run")
    assert reader.epochs[0]["acc_all"] == pytest.approx(record["acc_all"])
    saved = reader.features(0)
    np.testing.assert_allclose(saved["features"], z.numpy(), rtol=0, atol=1e-6)
    assert saved["labeled"].tolist() == labeled.tolist()
    assert saved["novel"].tolist() == (novel & unl).tolist()


def test_simgcd_batches_give_the_same_record(tmp_path):
    backbone, head = toy_models()
    x, y, labeled = _planted()
    plain = Probe(backbone).record_epoch(
        backbone, head, _loader(x, y, labeled), labeled=labeled, novel=y >= 2
    )
    # mask_lab from the batches, old classes as a count, first view of the list
    simgcd = Probe(backbone).record_epoch(
        backbone, head, _loader(x, y, labeled, simgcd=True), old_classes=2
    )
    assert plain == simgcd


def test_recipe_evaluation_and_record_epoch_are_one_implementation():
    data = load_source("synthetic", seed=0)
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Linear(data.x.shape[1], 16), torch.nn.Tanh())
    head = torch.nn.Linear(16, data.num_classes)
    record, _ = evaluate(backbone, head, data, "cpu", batch_size=128)
    rows = torch.arange(len(data))
    loader = [(data.x[r], data.labels[r]) for r in rows.split(128)]
    mine = Probe(head).record_epoch(
        backbone, head, loader, labeled=data.labeled, novel=data.novel, epoch=0
    )
    assert {k: v for k, v in mine.items() if k not in ("epoch", "step")} == record


def test_epoch_defaults_to_the_probe_epoch_then_a_count():
    backbone, head = toy_models()
    x, y, labeled = _planted()
    probe = Probe(backbone)
    loader = _loader(x, y, labeled)
    assert probe.record_epoch(backbone, head, loader, labeled=labeled, old_classes=2)["epoch"] == 0
    assert probe.record_epoch(backbone, head, loader, labeled=labeled, old_classes=2)["epoch"] == 1
    probe.epoch = 7
    assert probe.record_epoch(backbone, head, loader, labeled=labeled, old_classes=2)["epoch"] == 7
    assert len(probe.epoch_records) == 3


def test_bad_masks_say_what_to_pass():
    backbone, head = toy_models()
    x, y, labeled = _planted()
    probe = Probe(backbone)
    with pytest.raises(EntangleValueError, match="novel=.*old_classes="):
        probe.record_epoch(backbone, head, _loader(x, y, labeled), labeled=labeled)
    with pytest.raises(EntangleValueError, match="loader's order"):
        probe.record_epoch(
            backbone, head, _loader(x, y, labeled), labeled=labeled[:5], old_classes=2
        )
