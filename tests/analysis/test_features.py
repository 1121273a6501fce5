"""analyze's feature record is the probe's epoch record plus analyze's extras, field for field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from entangle import Probe
from entangle.analysis.features import feature_record
from entangle.metrics import principal_angles, soc

# the keys feature_record adds to the shared epoch record (docs/records.md, analyze)
ANALYZE_ONLY = {"soc_k", "free_energy", "free_energy_temperature", "knn_rows"}


def _planted(n_novel: int, n_unlabeled_old: int = 30, dim: int = 24, seed: int = 0):
    """Features ``[n, dim]`` of classes 0-2 (old: 30 labeled rows + unlabeled ones) and 3-4."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat(
        [
            torch.arange(30) % 3,
            torch.arange(n_unlabeled_old) % 3,
            3 + torch.arange(n_novel) % 2,
        ]
    )
    z = torch.randn(len(y), dim, generator=g) + 2.0 * torch.nn.functional.one_hot(y, dim)
    labeled = torch.arange(len(y)) < 30
    return z, y, labeled, y >= 3


def _head(dim: int, classes: int = 5, nan: bool = False) -> torch.nn.Linear:
    torch.manual_seed(1)
    head = torch.nn.Linear(dim, classes)
    if nan:
        with torch.no_grad():
            head.weight[0, 0] = float("nan")
    return head


def _both(z, y, labeled, novel, head, k: int = 16):
    """``(probe record without epoch/step, analyze record)`` of the same features."""
    loader = [(z[r], y[r]) for r in torch.arange(len(y)).split(32)]
    probe = Probe(head).record_epoch(
        torch.nn.Identity(), head, loader, labeled=labeled, novel=novel, k=k, aperture=2.0
    )
    with torch.no_grad():
        logits = head(z)
    analyzed, _ = feature_record(
        z, logits, y, labeled, novel, num_classes=5, kmeans=False, tsne=False, soc_k=k
    )
    return {key: v for key, v in probe.items() if key not in ("epoch", "step")}, analyzed


def _same(a: dict, b: dict) -> bool:
    # JSON text: NaN equals NaN and float noise would show (the records are written so)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_analyze_and_the_probe_write_the_same_record_for_the_same_features():
    z, y, labeled, novel = _planted(n_novel=40)
    probe, analyzed = _both(z, y, labeled, novel, _head(z.shape[1]))
    assert set(analyzed) - set(probe) == ANALYZE_ONLY
    assert _same(probe, {k: v for k, v in analyzed.items() if k in probe})
    assert analyzed["soc_k"] == probe["k"] == 16
    assert analyzed["knn_rows"] == int((~labeled).sum())


def test_few_novel_rows_keep_the_runs_k_in_both():
    """7 novel rows, k = 16: SOC is defined (its cap is the labeled set's rank), the angles
    are NaN (the novel set's rank is 6). analyze once capped k at 6 and so wrote another SOC."""
    z, y, labeled, novel = _planted(n_novel=7)
    probe, analyzed = _both(z, y, labeled, novel, _head(z.shape[1]))
    assert _same(probe, {k: v for k, v in analyzed.items() if k in probe})
    old, new = z[labeled], z[novel]
    assert analyzed["k"] == 16
    assert analyzed["soc"] == pytest.approx(float(soc(old, new, 16)), abs=1e-6)
    assert torch.isnan(principal_angles(old, new, 16, warn=False)).all()
    assert all(a != a for a in analyzed["principal_angles"])


def test_knn_overlap_is_k10_or_absent_in_both():
    """6 unlabeled rows: no k = 10 neighbourhood exists; the probe once shrank k to 5."""
    z, y, labeled, novel = _planted(n_novel=3, n_unlabeled_old=3)
    probe, analyzed = _both(z, y, labeled, novel, _head(z.shape[1]))
    assert "knn_overlap" not in probe and "knn_overlap" not in analyzed
    assert "knn_rows" not in analyzed
    assert _same(probe, {k: v for k, v in analyzed.items() if k in probe})


def test_nan_logits_give_nan_accuracy_in_analyze_too():
    """analyze once wrote the accuracy of argmax(NaN logits), a constant class."""
    z, y, labeled, novel = _planted(n_novel=40)
    probe, analyzed = _both(z, y, labeled, novel, _head(z.shape[1], nan=True))
    assert _same(probe, {k: v for k, v in analyzed.items() if k in probe})
    assert analyzed["acc_all"] != analyzed["acc_all"]
    assert "logits hold NaN" in analyzed["nan_reason"]
    assert analyzed["soc"] == analyzed["soc"]  # the features are finite: SOC stands


def test_nan_features_give_nan_knn_shares_and_chance_levels():
    z, y, labeled, novel = _planted(n_novel=40)
    z[-1, 0] = float("nan")  # an unlabeled novel row
    probe, analyzed = _both(z, y, labeled, novel, _head(z.shape[1]))
    assert _same(probe, {k: v for k, v in analyzed.items() if k in probe})
    knn = analyzed["knn_overlap"]
    assert knn["new_to_old"] != knn["new_to_old"] and knn["old_to_new"] != knn["old_to_new"]
    assert knn["new_to_old_chance"] == pytest.approx(30 / (70 - 1))
    assert "features hold NaN" in analyzed["nan_reason"]


def test_knn_overlap_uses_the_same_rows_in_feature_space_and_in_the_map():
    from entangle.analysis.features import feature_record
    from entangle.defaults import KNN_K
    from entangle.metrics import knn_overlap

    g = torch.Generator().manual_seed(0)
    n = 240
    labels = torch.arange(n) % 6
    z = torch.randn(n, 8, generator=g) + labels[:, None].float()
    labeled = (labels < 3) & (torch.arange(n) % 2 == 0)
    novel = labels >= 3
    record, arrays = feature_record(
        z, None, labels, labeled, novel, num_classes=6, kmeans=False, tsne_max_points=120
    )
    kept = torch.as_tensor(np.asarray(arrays["tsne_rows"]))
    rows = kept[~labeled[kept]]
    # before: feature space over every unlabeled row, the map over every kept row (labeled too)
    assert record["knn_rows"] == len(rows) < int((~labeled).sum())
    want = knn_overlap(z[rows], novel[rows], k=KNN_K)
    assert record["knn_overlap"] == pytest.approx(want)
    coords = torch.from_numpy(np.asarray(arrays["tsne"], dtype=np.float32))[~labeled[kept]]
    want_map = knn_overlap(coords, novel[rows], k=KNN_K, metric="euclidean")
    assert record["knn_overlap_tsne"] == pytest.approx(want_map)
