"""``entangle.analysis.analyze``: checkpoints analysed end to end, numbers checked against
direct computation, runs never overwritten and resumed, unsafe inputs refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from entangle.analysis import AnalyzeConfig, analyze, load_inputs
from entangle.checkpoints import CheckpointError
from entangle.data.datasets import GCDData, GCDSplit
from entangle.errors import EntangleValueError
from entangle.metrics import cluster_accuracy, soc
from entangle.models.heads import GCDHead
from entangle.models.vit import VIT_CONFIGS, VisionTransformer
from entangle.runs.directory import RunReader
from tests.analysis.digits import SMALL, digits_models


def test_digits_checkpoint_numbers_match_direct_computation(digits_ckpt, digits_run):
    result, config = digits_run
    (analysis,) = result.analyses
    assert analysis.format == "entangle"
    reader = RunReader(analysis.run_dir)
    assert reader.complete and reader.config["format"] == "entangle"
    assert reader.config["checkpoint"] == str(digits_ckpt.resolve())
    assert reader.config["class_names"] == [str(c) for c in range(10)]

    data = load_inputs("digits", seed=config.seed, max_samples=config.max_samples)
    backbone, head = digits_models()
    with torch.no_grad():
        z = backbone(data.x)
        logits = head(z)[1]
    saved = reader.features(0)
    np.testing.assert_allclose(saved["features"], z.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(saved["labels"], data.labels.numpy())
    np.testing.assert_array_equal(saved["labeled"], data.labeled.numpy())

    unl = ~data.labeled
    want = cluster_accuracy(data.labels[unl], logits.argmax(1)[unl], ~data.novel[unl])
    (epoch,) = reader.epochs
    assert (epoch["acc_all"], epoch["acc_old"], epoch["acc_new"]) == pytest.approx(want)
    km = saved["kmeans"]
    want_km = cluster_accuracy(data.labels[unl], km[unl.numpy()], ~data.novel[unl])
    assert list(epoch["kmeans"].values()) == pytest.approx(want_km)
    assert len(np.unique(km)) == 10
    novel_unl = data.novel & unl
    k = epoch["soc_k"]
    assert epoch["soc"] == pytest.approx(float(soc(z[data.labeled], z[novel_unl], k)), abs=1e-5)
    assert 0 <= epoch["knn_overlap"]["new_to_old"] <= 1
    assert "knn_overlap_tsne" in epoch and saved["tsne"].shape == (len(data), 2)
    assert analysis.summary["acc_all"] == pytest.approx(want[0])


def test_vit_checkpoint_in_simgcd_layout_on_in_memory_images(tmp_path):
    torch.manual_seed(1)
    vit = VisionTransformer(VIT_CONFIGS["vit-tiny-test"]).eval()
    head = GCDHead(64, 4, proj_dim=16, hidden_dim=32).eval()
    path = tmp_path / "simgcd.pt"
    torch.save({"model": nn.Sequential(vit, head).state_dict(), "epoch": 5}, path)
    images = torch.rand(32, 3, 32, 32)
    labels = torch.arange(32) % 4
    split = GCDSplit([0, 1], labeled_fraction=0.5)
    labeled, novel = split.masks(labels)
    data = GCDData(images, labels, labeled, novel, [0, 1], list("abcd"), "image", split)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    config = AnalyzeConfig(grad_batches=1, batch_size=8, tsne=False, kmeans=False, report=False)
    result = analyze([path], tmp_path / "out", config, data=data)
    (analysis,) = result.analyses
    assert analysis.format == "simgcd" and analysis.summary["num_classes"] == 4
    reader = RunReader(analysis.run_dir)
    with torch.no_grad():
        z = vit(images)
    np.testing.assert_allclose(reader.features(0)["features"], z.numpy(), rtol=1e-4, atol=1e-5)
    assert len(reader.steps) == 1 and "eagc" in reader.steps[0]
    assert all(torch.equal(v, before[k]) for k, v in vit.state_dict().items())


def test_features_file_is_analysed_without_a_model(tmp_path):
    gen = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    feats = gen.normal(size=(60, 8)).astype(np.float32) + labels[:, None]
    labeled = (labels < 2) & (np.arange(60) % 2 == 0)
    logits = gen.normal(size=(60, 4)).astype(np.float32)
    path = tmp_path / "feats.npz"
    np.savez(path, features=feats, labels=labels, labeled=labeled, logits=logits)
    config = AnalyzeConfig(data=f"features:{path}", **SMALL)
    result = analyze([], tmp_path / "out", config)
    (analysis,) = result.analyses
    assert any("gradient diagnostics" in n for n in analysis.notes)
    reader = RunReader(analysis.run_dir)
    assert reader.steps == []
    unl = ~labeled
    want = cluster_accuracy(labels[unl], logits.argmax(1)[unl], labels[unl] < 2)
    assert reader.epochs[0]["acc_all"] == pytest.approx(want[0])
    assert reader.config["old_classes"] == [0, 1]

    np.savez(tmp_path / "bad.npz", features=feats, labels=labels)
    with pytest.raises(EntangleValueError, match="lacks labeled"):
        load_inputs(f"features:{tmp_path / 'bad.npz'}")


class CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_and_corrupt_checkpoints_are_refused(tmp_path):
    victim = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": CreatesFile(victim)}, evil)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        analyze([evil], tmp_path / "out", AnalyzeConfig(**SMALL))
    assert not victim.exists()

    torn = tmp_path / "torn.pt"
    torn.write_bytes(evil.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        analyze([torn], tmp_path / "out", AnalyzeConfig(**SMALL))


def test_existing_runs_are_never_overwritten_and_names_stay_unique(tmp_path, digits_ckpt):
    config = AnalyzeConfig(**SMALL | {"grad": False, "kmeans": False, "max_samples": 60})
    result = analyze([digits_ckpt, digits_ckpt], tmp_path, config)
    names = [a.run_dir.name for a in result.analyses]
    assert names == ["digits", "digits-2"]
    done = json.loads((tmp_path / "digits" / "DONE").read_text())
    assert done["summary"]["grad_batches"] == 0
    # another checkpoint list or other settings: refused, naming the CLI flag
    with pytest.raises(EntangleValueError, match=r"max_samples, kmeans differ.*pass another --out"):
        analyze([digits_ckpt], tmp_path, AnalyzeConfig(**SMALL | {"grad": False}))


def test_a_rerun_skips_finished_runs_and_redoes_unfinished_ones(tmp_path, digits_ckpt):
    config = AnalyzeConfig(**SMALL | {"grad": False, "kmeans": False, "max_samples": 60})
    analyze([digits_ckpt, digits_ckpt], tmp_path, config)
    first = (tmp_path / "digits" / "DONE").read_bytes()
    # the second analysis was killed before it finished: no DONE, a torn record
    (tmp_path / "digits-2" / "DONE").unlink()
    with open(tmp_path / "digits-2" / "epochs.jsonl", "ab") as fh:
        fh.write(b'{"epoch": 0, "acc')
    result = analyze([digits_ckpt, digits_ckpt], tmp_path, config)
    assert (tmp_path / "digits" / "DONE").read_bytes() == first  # not redone
    assert "not redone" in result.analyses[0].notes[-1]
    again = RunReader(tmp_path / "digits-2")
    assert again.complete and again.meta["resumed_at"][0]["dropped_torn_bytes"]
    assert result.analyses[1].summary["acc_all"] == result.analyses[0].summary["acc_all"]
