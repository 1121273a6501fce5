"""One checkpoint's analysis: heads and data that do not fit refused before anything is
written, every accuracy protocol recorded and summarised."""

from __future__ import annotations

import pytest

from entangle.analysis import AnalyzeConfig, analyze
from entangle.checkpoints import CheckpointError, save_checkpoint
from entangle.errors import EntangleValueError
from entangle.metrics import cluster_accuracy
from entangle.runs.directory import RunReader
from tests.analysis.digits import SMALL, digits_models


def test_head_with_fewer_classes_than_the_data_is_refused(tmp_path):
    path = tmp_path / "k8.pt"
    save_checkpoint(path, *digits_models(num_classes=8))
    with pytest.raises(CheckpointError, match=r"K=8 classes but the data has 10 classes"):
        analyze([path], tmp_path / "out", AnalyzeConfig(**SMALL))
    assert not (tmp_path / "out" / "k8").exists()


def test_data_the_model_cannot_take_fails_before_anything_is_written(tmp_path, digits_ckpt):
    # the digits model reads 64 numbers per sample; synthetic vectors have 32
    config = AnalyzeConfig(**SMALL | {"data": "synthetic"})
    with pytest.raises(EntangleValueError, match="expects 64 input numbers"):
        analyze([digits_ckpt], tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def test_accuracy_protocols_are_recorded_and_summarised(digits_ckpt, tmp_path):
    config = AnalyzeConfig(**(SMALL | {"grad": False, "accuracy": "v1,v2b,v2"}))
    (analysis,) = analyze([digits_ckpt], tmp_path, config).analyses
    (epoch,) = RunReader(analysis.run_dir).epochs
    saved = RunReader(analysis.run_dir).features(0)
    unl = ~saved["labeled"]
    y, old = saved["labels"][unl], ~saved["novel"][unl]
    assert epoch["acc_protocol"] == epoch["kmeans_protocol"] == "v1"
    for protocol in ("v1", "v2b", "v2"):
        head = cluster_accuracy(y, saved["logits"].argmax(1)[unl], old, protocol)
        km = cluster_accuracy(y, saved["kmeans"][unl], old, protocol)
        assert list(epoch["acc_protocols"][protocol].values()) == pytest.approx(head)
        assert list(epoch["kmeans_protocols"][protocol].values()) == pytest.approx(km)
        assert analysis.summary[f"acc_new_{protocol}"] == pytest.approx(head[2])
    assert (epoch["acc_all"], epoch["acc_old"], epoch["acc_new"]) == pytest.approx(
        cluster_accuracy(y, saved["logits"].argmax(1)[unl], old, "v1")
    )
    assert analysis.summary["acc_protocol"] == "v1"


def test_the_summary_flattens_the_record_and_averages_the_gradient_steps():
    import math

    from entangle.analysis.one import summarize

    record = {
        "acc_all": 0.5,
        "acc_old": 0.75,
        "acc_protocol": "v1",
        "acc_protocols": {"v2": {"all": 0.4, "new": 0.3}},
        "kmeans": {"all": 0.6},
        "energy": {"labeled": {"mean": -2.0}},
        "knn_overlap": {"new_to_old": 0.125},
        "timing": {"embed_s": 1.5, "note": "x"},
    }
    steps = [
        {"raw": {"last_block": {"cos": -0.5, "gdc": 0.2}}},
        {"raw": {"last_block": {"cos": 0.25, "gdc": 0.4}}, "nan": True},
    ]
    out = summarize(record, steps, None)
    assert (out["format"], out["num_classes"], out["acc_protocol"]) == (None, None, "v1")
    assert (out["acc_all"], out["acc_old"]) == (0.5, 0.75) and math.isnan(out["acc_new"])
    assert (out["acc_all_v2"], out["acc_new_v2"], out["kmeans_all"]) == (0.4, 0.3, 0.6)
    assert math.isnan(out["kmeans_new"]) and math.isnan(out["soc"])
    assert out["energy_labeled"] == -2.0 and math.isnan(out["energy_unlabeled_new"])
    assert out["knn_new_to_old"] == 0.125 and out["embed_s"] == 1.5 and "note" not in out
    assert out["cos_raw"] == pytest.approx(-0.125) and out["gdc_raw"] == pytest.approx(0.3)
    assert out["conflict_rate_raw"] == pytest.approx(0.5) and "cos_eagc" not in out
    assert (out["grad_batches"], out["nan_steps"]) == (2, 1)
