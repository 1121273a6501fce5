"""``entangle.analysis``: checkpoints analysed end to end, numbers checked against direct
computation, weights untouched by the gradient diagnostics, unsafe and mismatching inputs
refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from entangle.analysis import AnalyzeConfig, analyze, load_inputs
from entangle.analysis.gradients import gradient_diagnostics
from entangle.checkpoints import CheckpointError, load_gcd_checkpoint, save_checkpoint
from entangle.data.datasets import GCDData, GCDSplit
from entangle.errors import EntangleValueError
from entangle.metrics import cluster_accuracy, gradient_conflict, soc
from entangle.models.backbones import ResidualMLP
from entangle.models.heads import GCDHead
from entangle.models.vit import VIT_CONFIGS, VisionTransformer
from entangle.probing.params import last_block
from entangle.runs.directory import RunReader, RunWriter

SMALL = {"max_samples": 160, "grad_batches": 2, "batch_size": 24, "tsne": False, "report": False}


def digits_models(num_classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    backbone = ResidualMLP(in_dim=64, dim=24, depth=2).eval()
    head = GCDHead(24, num_classes, proj_dim=16, hidden_dim=32).eval()
    return backbone, head


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(path, *digits_models(), meta={"epoch": 3})
    return path


@pytest.fixture(scope="module")
def digits_run(digits_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    config = AnalyzeConfig(**(SMALL | {"tsne": True}))
    return analyze([digits_ckpt], out, config), config


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


def test_head_with_fewer_classes_than_the_data_is_refused(tmp_path):
    path = tmp_path / "k8.pt"
    save_checkpoint(path, *digits_models(num_classes=8))
    with pytest.raises(CheckpointError, match=r"K=8 classes but the data has 10 classes"):
        analyze([path], tmp_path / "out", AnalyzeConfig(**SMALL))
    assert not (tmp_path / "out" / "k8").exists()


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


def test_the_users_own_labeled_split_replaces_the_random_one(tmp_path):
    base = load_inputs("digits")
    old_rows = torch.nonzero(~base.novel).flatten()
    chosen = old_rows[::7][:40]
    split = tmp_path / "labeled.txt"
    split.write_text("# my labeled samples\n" + "\n".join(str(int(i)) for i in chosen) + "\n")
    data = load_inputs("digits", labeled_split=split)
    # before: only entangle's own random split (--labeled-fraction) could be analysed
    assert torch.equal(torch.nonzero(data.labeled).flatten(), chosen.sort().values)
    assert torch.equal(data.novel, base.novel) and torch.equal(data.labels, base.labels)


def test_labeled_split_by_file_name_and_its_errors(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for c in ("cat", "dog", "eel", "fox"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(root / c / f"{c}{i}.png")
    split = tmp_path / "split.txt"
    split.write_text("cat0.png\ncat/cat2.png\ndog1.png\n")
    data = load_inputs(f"imagefolder:{root}", labeled_split=split)
    names = [p.name for p in data.x.paths]
    assert sorted(names[i] for i in torch.nonzero(data.labeled).flatten()) == [
        "cat0.png",
        "cat2.png",
        "dog1.png",
    ]
    split.write_text("cat0.png\nwolf.png\n")
    with pytest.raises(EntangleValueError, match="'wolf.png' names no sample"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)
    split.write_text("eel0.png\n")  # eel is a novel class (the second half)
    with pytest.raises(EntangleValueError, match="its class is novel"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)
    split.write_text("99\n")
    with pytest.raises(EntangleValueError, match="outside the data's 12 samples"):
        load_inputs(f"imagefolder:{root}", labeled_split=split)
