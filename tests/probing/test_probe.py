"""Probe: training gradient untouched, metrics equal brute force, EAGC measured per call."""

from __future__ import annotations

import math

import pytest
import torch

from entangle import EAGC, Probe, RunReader, RunWriter
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.metrics import conceptor, gradient_conflict, rowwise_cosine
from entangle.probing.params import last_block
from tests.support.toy import toy_batch, toy_losses, toy_models


def all_params(backbone, head):
    return list(backbone.parameters()) + list(head.parameters())


def plain_grads(backbone, head, x, y, labeled, scale=1.0, eagc=None, ref=None):
    for p in all_params(backbone, head):
        p.grad = None
    z = backbone(x)
    if eagc is not None:
        z = eagc.coordinate(z, labeled, ref)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    ((sup + unsup) * scale).backward()
    return [p.grad.clone() for p in all_params(backbone, head)]


def brute_force(backbone, head, x, y, labeled, params):
    """Separate autograd.grad calls on fresh graphs."""
    z = backbone(x)
    sup, _, _ = toy_losses(head, z, y, labeled)
    g_s = torch.autograd.grad(sup, params, allow_unused=True)
    z = backbone(x)
    _, unsup, _ = toy_losses(head, z, y, labeled)
    g_u = torch.autograd.grad(unsup, params, allow_unused=True)
    return list(g_s), list(g_u)


class FakeScaler:
    """GradScaler stand-in with a fixed scale (CPU GradScaler needs no CUDA)."""

    def __init__(self, scale=256.0):
        self.value = scale

    def is_enabled(self):
        return True

    def scale(self, t):
        return t * self.value


@pytest.fixture
def models():
    return toy_models()


def probed(probe, backbone, head, x, y, labeled, novel=None, scaler=None):
    z = backbone(x)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    return probe.backward(
        sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits, scaler=scaler
    )


@pytest.mark.parametrize("scale", [None, 256.0])
def test_grad_equals_plain_backward(models, scale):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    want = plain_grads(backbone, head, x, y, labeled, scale=scale or 1.0)
    for p in all_params(backbone, head):
        p.grad = None
    probe = Probe({"last": last_block(backbone), "all": all_params(backbone, head)})
    scaler = FakeScaler(scale) if scale else None
    record = probed(probe, backbone, head, x, y, labeled, novel, scaler=scaler)
    assert record is not None
    for p, w in zip(all_params(backbone, head), want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scale", [None, 256.0])
def test_raw_metrics_equal_brute_force(models, scale):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    groups = {"last": last_block(backbone), "all": all_params(backbone, head)}
    probe = Probe(groups)
    scaler = FakeScaler(scale) if scale else None
    record = probed(probe, backbone, head, x, y, labeled, novel, scaler=scaler)
    for name, params in groups.items():
        g_s, g_u = brute_force(backbone, head, x, y, labeled, params)
        want = gradient_conflict(g_s, g_u)
        for key in ("cos", "gdc", "norm_sup", "norm_unsup", "norm_ratio", "gms"):
            assert record["raw"][name][key] == pytest.approx(float(want[key]), rel=1e-6)
        assert record["raw"][name]["conflict"] == bool(want["conflict"])


def test_feature_level_conflict_equals_brute_force(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    probe = Probe(backbone)
    record = probed(probe, backbone, head, x, y, labeled, novel)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    (gs,) = torch.autograd.grad(sup, z, retain_graph=True)
    (gu,) = torch.autograd.grad(unsup, z)
    cos = rowwise_cosine(gs[labeled], gu[labeled])
    assert record["feature"]["labeled"]["cos_mean"] == pytest.approx(float(cos.mean()), rel=1e-5)
    assert record["feature"]["labeled"]["conflict_frac"] == pytest.approx(
        float((cos < 0).double().mean())
    )
    assert record["feature"]["labeled"]["n"] == int(labeled.sum())
    # unlabeled rows get no supervised gradient: their cosine is undefined, counted as such
    assert record["feature"]["unlabeled"]["n"] == 0
    assert set(record["feature"]) == {"labeled", "unlabeled", "unlabeled_old", "unlabeled_new"}


def test_single_group_record_is_flat(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    record = probed(Probe(backbone), backbone, head, x, y, labeled)
    assert set(record["raw"]) == {
        "cos",
        "gdc",
        "norm_sup",
        "norm_unsup",
        "norm_ratio",
        "gms",
        "conflict",
    }


def test_every_k_probes_only_due_steps(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone, every=3)
    out = []
    for _ in range(7):
        backbone.zero_grad()
        out.append(probed(probe, backbone, head, x, y, labeled))
    assert [r is not None for r in out] == [True, False, False, True, False, False, True]
    assert [r["step"] for r in probe.records] == [0, 3, 6]


def test_accumulation_sums_like_plain(models):
    backbone, head = models
    batches = [toy_batch(seed=s) for s in (1, 2)]
    for p in all_params(backbone, head):
        p.grad = None
    for x, y, labeled, _ in batches:
        z = backbone(x)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        ((sup + unsup) / 2).backward()
    want = [p.grad.clone() for p in all_params(backbone, head)]
    for p in all_params(backbone, head):
        p.grad = None
    probe = Probe(all_params(backbone, head))
    for x, y, labeled, _ in batches:
        z = backbone(x)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        probe.backward(sup / 2, unsup / 2, features=z, labeled=labeled)
    for p, w in zip(all_params(backbone, head), want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-6, atol=0)
    # each micro-batch's record measures that micro-batch alone
    x, y, labeled, _ = batches[1]
    g_s, g_u = brute_force(backbone, head, x, y, labeled, all_params(backbone, head))
    assert probe.records[1]["raw"]["cos"] == pytest.approx(
        float(gradient_conflict(g_s, g_u)["cos"]), rel=1e-6
    )


def make_eagc(backbone, x, labeled):
    with torch.no_grad():
        feats = backbone(x)[labeled]
    return EAGC(conceptor(feats, 1.5), 0.5, aga_weight=0.7, eep_weight=0.5)


def test_eagc_probe_grad_equals_eagc_alone(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    ref = (backbone(x) * 0.9).detach()
    want = plain_grads(backbone, head, x, y, labeled, eagc=make_eagc(backbone, x, labeled), ref=ref)
    for p in all_params(backbone, head):
        p.grad = None
    eagc = make_eagc(backbone, x, labeled)
    probe = Probe({"backbone": backbone, "all": all_params(backbone, head)}, eagc=eagc)
    z = eagc.coordinate(backbone(x), labeled, ref)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    record = probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits)
    for p, w in zip(all_params(backbone, head), want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-6, atol=0)
    assert "eagc" in record and "feature_eagc" in record
    assert record["energy"]["eep_weight"]["n"] == int((~labeled).sum())


def test_eagc_probe_metrics_equal_brute_force(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch(n=16, n_labeled=6)
    ref = (backbone(x) * 0.9).detach()
    eagc = make_eagc(backbone, x, labeled)
    params = list(backbone.parameters())
    probe = Probe(params, eagc=eagc)
    z = eagc.coordinate(backbone(x), labeled, ref)
    state = eagc.state_for(z)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    record = probe.backward(sup, unsup, features=z, labeled=labeled)

    # brute force on a fresh graph with the same call's weights and AGA term
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    (gs,) = torch.autograd.grad(sup, z, retain_graph=True)
    (gu,) = torch.autograd.grad(unsup, z, retain_graph=True)
    raw_s = torch.autograd.grad(z, params, gs, retain_graph=True)
    raw_u = torch.autograd.grad(z, params, gu, retain_graph=True)
    c = eagc.conceptor
    proj_s = gs - state.weights[:, None] * (gs @ c)
    proj_u = gu - state.weights[:, None] * (gu @ c)
    cor_s = torch.autograd.grad(z, params, proj_s + state.aga, retain_graph=True)
    cor_u = torch.autograd.grad(z, params, proj_u)
    for key, (a, b) in {"raw": (raw_s, raw_u), "eagc": (cor_s, cor_u)}.items():
        want = gradient_conflict(list(a), list(b))
        for k in ("cos", "gdc", "norm_sup", "norm_unsup"):
            assert record[key][k] == pytest.approx(float(want[k]), rel=1e-6), (key, k)
    assert record["raw"]["cos"] != pytest.approx(record["eagc"]["cos"])


def test_eagc_probe_needs_coordinated_features(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone, eagc=make_eagc(backbone, x, labeled))
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    with pytest.raises(EntangleValueError, match="coordinate"):
        probe.backward(sup, unsup, features=z, labeled=labeled)


def test_no_labeled_rows_gives_nan_with_reason(models):
    backbone, head = models
    x, y, _, _ = toy_batch()
    labeled = torch.zeros(x.shape[0], dtype=torch.bool)
    probe = Probe(backbone)
    record = probed(probe, backbone, head, x, y, labeled)
    assert math.isnan(record["raw"]["cos"])
    assert "no labeled rows" in record["nan"]["raw"]
    assert all(p.grad is not None for p in backbone.parameters())


def test_nan_loss_gives_reason_and_continues(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    record = probe.backward(sup * float("nan"), unsup, features=z, labeled=labeled)
    assert math.isnan(record["raw"]["cos"])
    assert "not finite" in record["nan"]["raw"]
    record = probed(probe, backbone, head, x, y, labeled)
    assert not math.isnan(record["raw"]["cos"])


def test_features_not_in_graph_is_a_clear_error(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone)
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    other = backbone(x)
    with pytest.raises(EntangleValueError, match="not in the graph"):
        probe.backward(sup, unsup, features=other, labeled=labeled)
    with pytest.raises(EntangleValueError, match="detached"):
        probe.backward(sup, unsup, features=z.detach(), labeled=labeled)
    with pytest.raises(EntangleValueError, match="one entry per row"):
        probe.backward(sup, unsup, features=z, labeled=labeled[:3])


class FailingBackward(torch.autograd.Function):
    """Identity whose backward raises, counting the probe's hooks present at that moment."""

    hooks_seen = 0

    @staticmethod
    def forward(ctx, x, params):
        ctx.params = params
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        FailingBackward.hooks_seen = sum(len(p._backward_hooks or {}) for p in ctx.params)
        raise RuntimeError("backward failed")


def test_no_hooks_left_behind(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    params = list(backbone.parameters())
    with Probe(backbone) as probe:
        probed(probe, backbone, head, x, y, labeled)
        z = backbone(x)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        # the raw g_S pass does not reach unsup's graph: the failure comes in the training
        # backward, after the probe registered its capture hooks
        unsup = FailingBackward.apply(unsup, params)
        FailingBackward.hooks_seen = 0
        with pytest.raises(RuntimeError, match="backward failed"):
            probe.backward(sup, unsup, features=z, labeled=labeled)
    assert FailingBackward.hooks_seen == len(params)  # the hooks existed when it failed
    for module in backbone.modules():
        assert not module._forward_hooks and not module._backward_hooks
    for p in backbone.parameters():
        assert not p._backward_hooks
    with pytest.raises(EntangleRuntimeError, match="closed"):
        probed(probe, backbone, head, x, y, labeled)


def test_frozen_group_is_refused(models):
    backbone, _ = models
    backbone.stem.requires_grad_(False)
    with pytest.raises(EntangleValueError, match="frozen"):
        Probe([backbone.stem.weight])


def test_records_go_to_the_run(models, tmp_path):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    with RunWriter(tmp_path / "run") as run:
        probe = Probe(backbone, run=run, known_subspace=torch.eye(5, dtype=torch.float64) * 0.5)
        for _ in range(2):
            backbone.zero_grad()
            probed(probe, backbone, head, x, y, labeled, novel)
    steps = RunReader(tmp_path / "run").steps
    assert [s["step"] for s in steps] == [0, 1]
    assert steps[0]["energy"]["ratio"]["labeled"]["mean"] == pytest.approx(0.5)


@pytest.mark.gpu
def test_probe_on_cuda_matches_cpu(models):
    import copy

    backbone, head = models
    x, y, labeled, novel = toy_batch()
    want = probed(Probe(backbone), backbone, head, x, y, labeled, novel)
    cuda = torch.device("cuda")
    backbone_c, head_c = copy.deepcopy(backbone).to(cuda), copy.deepcopy(head).to(cuda)
    got = probed(
        Probe(backbone_c),
        backbone_c,
        head_c,
        x.to(cuda),
        y.to(cuda),
        labeled.to(cuda),
        novel.to(cuda),
    )
    for key in ("cos", "gdc", "norm_sup", "norm_unsup"):
        assert got["raw"][key] == pytest.approx(want["raw"][key], rel=1e-6)


def test_real_grad_scaler_metrics_are_unscaled(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    plain = probed(Probe(backbone), backbone, head, x, y, labeled, novel)
    backbone.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaled = probed(Probe(backbone), backbone, head, x, y, labeled, novel, scaler=scaler)
    for key in ("cos", "gdc", "norm_sup", "norm_unsup", "norm_ratio", "gms"):
        assert scaled["raw"][key] == pytest.approx(plain["raw"][key], rel=1e-6)
    # .grad holds the scaled gradient, as after scaler.scale(loss).backward()
    grad_scaled = [p.grad.clone() for p in backbone.parameters()]
    want = plain_grads(backbone, head, x, y, labeled, scale=2.0**10)
    for g, w in zip(grad_scaled, want, strict=False):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=0)


def test_probe_with_a_path_starts_and_finishes_a_new_run(models, tmp_path):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone, run=tmp_path / "run")
    probed(probe, backbone, head, x, y, labeled)
    probe.close({"note": "done"})
    reader = RunReader(tmp_path / "run")
    assert reader.complete and len(reader.steps) == 1
    with pytest.raises(EntangleValueError, match="resume=True"):
        Probe(backbone, run=tmp_path / "run")


def test_probe_records_config_seed_and_device_of_the_run_it_opens(models, tmp_path):
    backbone, _ = models
    Probe(backbone, run=tmp_path / "run", config={"lr": 0.1}, seed=3).close()
    reader = RunReader(tmp_path / "run")
    assert reader.config == {"lr": 0.1} and reader.meta["seed"] == 3
    assert reader.meta["device"] == str(next(backbone.parameters()).device)
    with RunWriter(tmp_path / "own") as run, pytest.raises(EntangleValueError, match="RunWriter"):
        Probe(backbone, run=run, seed=3)  # a RunWriter you pass keeps its own metadata


def test_exception_inside_with_probe_leaves_the_run_incomplete(models, tmp_path):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    with pytest.raises(ZeroDivisionError), Probe(backbone, run=tmp_path / "run") as probe:
        probed(probe, backbone, head, x, y, labeled)
        raise ZeroDivisionError
    reader = RunReader(tmp_path / "run")
    assert not reader.complete and len(reader.steps) == 1


@pytest.mark.parametrize("key", ["energy", "raw", "probeset", "step"])
def test_extra_may_not_overwrite_the_probes_entries(models, key):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone, known_subspace=torch.eye(5, dtype=torch.float64))
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    with pytest.raises(EntangleValueError, match=f"overwrite.*'{key}'"):
        probe.backward(sup, unsup, features=z, labeled=labeled, extra={key: 1.0})
    assert not probe.records


def test_extra_adds_new_keys_beside_the_probes_own(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch()
    probe = Probe(backbone, known_subspace=torch.eye(5, dtype=torch.float64))
    z = backbone(x)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    record = probe.backward(sup, unsup, features=z, labeled=labeled, extra={"my_metric": 2.0})
    assert record["my_metric"] == 2.0 and "ratio" in record["energy"]


@pytest.mark.parametrize("gap", [1e-3, 1e-4])
def test_gdc_is_exact_when_the_losses_nearly_cancel(gap):
    # g_U = -(1 - gap) g_S: the total is gap * g_S, so GDC is exactly 0; the expanded
    # ||g_S||^2 + ||g_U||^2 + 2<g_S, g_U> lost every digit (before: 0.05 at 1e-3, NaN with
    # "the losses cancel exactly" at 1e-4 in float32)
    for seed in range(5):
        backbone, head = toy_models()
        backbone.float()
        head.float()
        x, y, labeled, _ = toy_batch(seed=seed)
        sup, _, _ = toy_losses(head, backbone(x.float()), y, labeled)
        record = Probe(list(backbone.parameters())).backward(sup, -(1 - gap) * sup)
        assert record["raw"]["gdc"] == pytest.approx(0.0, abs=1e-6)
        assert record["nan"] == {}


@pytest.mark.parametrize("with_eagc", [True, False])
@pytest.mark.parametrize("where", ["coordinate", "backward"])
def test_a_scaler_on_one_side_only_is_refused(models, where, with_eagc):
    # before: silently accepted; with the scaler on coordinate only, the unscaled .grad of
    # the backbone was 163x the right one (AGA term multiplied by the loss scale 256)
    backbone, head = models
    x, y, labeled, _ = toy_batch(n=16, n_labeled=6)
    ref = (backbone(x) * 0.9).detach()
    eagc = make_eagc(backbone, x, labeled)
    scaler = FakeScaler(256.0)
    z = eagc.coordinate(backbone(x), labeled, ref, scaler=scaler if where == "coordinate" else None)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    probe = Probe(backbone, eagc=eagc if with_eagc else None, every=3)
    with pytest.raises(EntangleValueError, match="GradScaler.*pass the same scaler"):
        probe.backward(
            sup, unsup, features=z, labeled=labeled, scaler=scaler if where == "backward" else None
        )
    assert all(p.grad is None for p in backbone.parameters())


def test_the_same_scaler_on_both_sides_gives_the_plain_gradient(models):
    backbone, head = models
    x, y, labeled, _ = toy_batch(n=16, n_labeled=6)
    ref = (backbone(x) * 0.9).detach()
    want = plain_grads(backbone, head, x, y, labeled, eagc=make_eagc(backbone, x, labeled), ref=ref)
    for p in all_params(backbone, head):
        p.grad = None
    eagc, scaler = make_eagc(backbone, x, labeled), FakeScaler(256.0)
    z = eagc.coordinate(backbone(x), labeled, ref, scaler=scaler)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    Probe(backbone, eagc=eagc).backward(sup, unsup, features=z, labeled=labeled, scaler=scaler)
    for p, w in zip(all_params(backbone, head), want, strict=True):
        torch.testing.assert_close(p.grad / 256.0, w, rtol=1e-6, atol=1e-12)


def test_free_energy_is_over_the_softmax_logits_and_names_its_temperature(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    probe = Probe(backbone, logit_temperature=0.1)
    z = backbone(x)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    record = probe.backward(sup, unsup, features=z, labeled=labeled, novel=novel, logits=logits)
    want = -torch.logsumexp(logits.detach() / 0.1, dim=1)
    free = record["energy"]["free_energy"]
    assert free["labeled"]["mean"] == pytest.approx(float(want[labeled].mean()))
    assert free["unlabeled_new"]["mean"] == pytest.approx(float(want[novel].mean()))
    assert record["energy"]["free_energy_temperature"] == 0.1
    assert record["energy"]["free_energy_temperature_source"] == "given"
    with pytest.raises(EntangleValueError, match="logit_temperature"):
        Probe(backbone, logit_temperature=0.0)


def test_free_energy_temperature_defaults_to_simgcd_and_says_so_never_one(models):
    backbone, head = models
    x, y, labeled, novel = toy_batch()
    z = backbone(x)
    sup, unsup, logits = toy_losses(head, z, y, labeled)
    record = Probe(backbone).backward(sup, unsup, features=z, labeled=labeled, logits=logits)
    # CVMI-Lab/SimGCD train.py: student_out / 0.1
    assert record["energy"]["free_energy_temperature"] == 0.1
    assert record["energy"]["free_energy_temperature_source"] == "SimGCD default"
    want = -torch.logsumexp(logits.detach() / 0.1, dim=1)
    got = record["energy"]["free_energy"]["labeled"]["mean"]
    assert got == pytest.approx(float(want[labeled].mean()))


def _authors_gdc(backbone, head, x, y, labeled, ref, c, weights, aga_weight=0.7):
    """The authors' compute_gdc, re-derived: their hook (projection with ``weights``, AGA with
    this batch's reference) fires inside grad(L_sup) and grad(L_sup + L_unsup) of the last
    block; GDC = 1 - cos of the two."""
    params = list(backbone.blocks[-1].parameters())
    z = backbone(x)
    n_lab, dim = int(labeled.sum()), z.shape[1]
    delta = (z - ref).detach()

    def hook(g):
        if weights is not None:
            g = g - weights[:, None] * (g @ c)
        return g + aga_weight / (n_lab * dim) * labeled[:, None].double() * delta

    z.register_hook(hook)
    sup, unsup, _ = toy_losses(head, z, y, labeled)
    g_l = torch.cat([g.reshape(-1) for g in torch.autograd.grad(sup, params, retain_graph=True)])
    g_lu = torch.cat([g.reshape(-1) for g in torch.autograd.grad(sup + unsup, params)])
    return float(1 - g_l @ g_lu / (g_l.norm() * g_lu.norm()))


def test_eagc_authors_gdc_uses_the_previous_batch_weights(models):
    backbone, head = models
    batches = [toy_batch(n=16, n_labeled=6, seed=s) for s in (0, 1)]
    eagc = make_eagc(backbone, batches[0][0], batches[0][2])
    c = eagc.conceptor.clone()
    probe = Probe({"last": last_block(backbone)}, eagc=eagc)
    records, refs = [], []
    for x, y, labeled, _ in batches:
        ref = (backbone(x) * 0.9).detach()
        refs.append(ref)
        z = eagc.coordinate(backbone(x), labeled, ref)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        records.append(probe.backward(sup, unsup, features=z, labeled=labeled))
    # step 0's EEP weights, independently: mu moves with the batch's labeled energy first
    x0, _, lab0, _ = batches[0]
    with torch.no_grad():
        z0 = backbone(x0)
        e0 = (((z0 @ c) * z0).sum(1) / z0.pow(2).sum(1)).clamp(0, 1)
        mu = 0.95 * 0.5 + 0.05 * float(e0[lab0].mean())
        w0 = 0.5 * (1 - e0 / (mu + 1e-6)).clamp(0, 1) * (~lab0).double()
    expect = [
        _authors_gdc(backbone, head, *batches[0][:3], refs[0], c, None),
        _authors_gdc(backbone, head, *batches[1][:3], refs[1], c, w0),
    ]
    for record, want in zip(records, expect, strict=True):
        assert record["eagc_authors"]["last"]["gdc"] == pytest.approx(want, rel=1e-6)
    assert [r["eagc_authors_weights"] for r in records] == ["none", "previous"]
    # the applied one uses the step's own weights: the two differ once weights differ
    assert records[1]["eagc"]["last"]["gdc"] != pytest.approx(expect[1], rel=1e-6)
