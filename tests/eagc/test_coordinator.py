"""EAGC against a direct implementation of docs/quantities.md, its paths, ablations and errors."""

from __future__ import annotations

import copy

import pytest
import torch

from entangle import EAGC
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.metrics import conceptor
from entangle.metrics.calibration import auto_aperture
from tests.support.toy import toy_batch, toy_losses, toy_models

SWITCHES = {
    "full": {},
    "aga_only": {"eep": False},
    "eep_only": {"aga": False},
    "fixed": {"adaptive": False},
}


def direct_eagc_grads(backbone, head, batches, c, mu, *, aga_w, beta, mom, aga, eep, adaptive):
    """docs/quantities.md (EAGC) written out by hand: feature gradient, formula, then backprop."""
    grads = []
    for x, y, labeled, ref in batches:
        backbone.zero_grad()
        head.zero_grad()
        z = backbone(x)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        (g,) = torch.autograd.grad(sup + unsup, z, retain_graph=True)
        zd = z.detach()
        energy = ((zd @ c) * zd).sum(1) / (zd * zd).sum(1)
        energy = energy.clamp(0, 1)
        m = labeled.double()
        if labeled.any():
            mu = mom * mu + (1 - mom) * energy[labeled].mean()
        new_g = g.clone()
        if eep:
            w = (
                beta * (1 - energy / (mu + 1e-6)).clamp(0, 1)
                if adaptive
                else torch.full_like(energy, beta)
            )
            w = w * (1 - m)
            new_g = new_g - w[:, None] * (g @ c.T)
        if aga:
            n, d = labeled.sum(), z.shape[1]
            new_g = new_g + aga_w / (n * d) * m[:, None] * (zd - ref)
        # head gradient is untouched by EAGC: backprop the total through the head, and the
        # corrected feature gradient through the backbone
        head_grads = torch.autograd.grad(sup + unsup, list(head.parameters()), retain_graph=True)
        z.backward(new_g)
        grads.append(
            [p.grad.clone() for p in backbone.parameters()] + [h.clone() for h in head_grads]
        )
    return grads, mu


def eagc_grads(eagc, backbone, head, batches):
    grads = []
    for x, y, labeled, ref in batches:
        backbone.zero_grad()
        head.zero_grad()
        z = eagc.coordinate(backbone(x), labeled, ref)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        (sup + unsup).backward()
        grads.append(
            [p.grad.clone() for p in list(backbone.parameters()) + list(head.parameters())]
        )
    return grads


@pytest.fixture
def setup():
    backbone, head = toy_models()
    ref_backbone = copy.deepcopy(backbone)
    with torch.no_grad():
        for p in ref_backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batches = []
    for seed in range(3):
        x, y, labeled, _ = toy_batch(seed=seed)
        with torch.no_grad():
            ref = ref_backbone(x)
        batches.append((x, y, labeled, ref))
    feats = torch.cat([ref_backbone(b[0])[b[2]] for b in batches]).detach()
    c = conceptor(feats, aperture=1.5)
    return backbone, head, batches, c


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_matches_direct_formula_over_steps(setup, switch):
    backbone, head, batches, c = setup
    kw = {"aga": True, "eep": True, "adaptive": True} | SWITCHES[switch]
    eagc = EAGC(c, 0.6, aga_weight=0.7, eep_weight=0.5, momentum=0.9, **kw)
    got = eagc_grads(eagc, backbone, head, batches)
    want, mu = direct_eagc_grads(
        backbone,
        head,
        batches,
        c,
        torch.tensor(0.6, dtype=torch.float64),
        aga_w=0.7,
        beta=0.5,
        mom=0.9,
        **kw,
    )
    for step_got, step_want in zip(got, want, strict=True):
        for a, b in zip(step_got, step_want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    if kw["eep"]:
        assert float(eagc.mu) == pytest.approx(float(mu), rel=1e-6)


def test_correction_changes_gradients(setup):
    backbone, head, batches, c = setup
    plain = EAGC(c, 0.6, aga=False, eep=False)
    on = EAGC(c, 0.6)
    a = eagc_grads(plain, backbone, head, batches[:1])[0]
    b = eagc_grads(on, backbone, head, batches[:1])[0]
    assert any(not torch.allclose(x, y) for x, y in zip(a, b, strict=True))


def test_attach_equals_coordinate(setup):
    backbone, head, batches, c = setup
    want = eagc_grads(EAGC(c, 0.6), backbone, head, batches)
    eagc = EAGC(c, 0.6)
    got = []
    with eagc.attach(backbone):
        for x, y, labeled, ref in batches:
            backbone.zero_grad()
            head.zero_grad()
            with eagc.batch(labeled=labeled, reference=ref):
                z = backbone(x)
            sup, unsup, _ = toy_losses(head, z, y, labeled)
            (sup + unsup).backward()
            got.append(
                [p.grad.clone() for p in list(backbone.parameters()) + list(head.parameters())]
            )
    assert not backbone._forward_hooks
    for step_got, step_want in zip(got, want, strict=True):
        for a, b in zip(step_got, step_want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_attach_lifecycle(setup):
    backbone, _, _, c = setup
    eagc = EAGC(c, 0.6)
    eagc.attach(backbone)
    with pytest.raises(EntangleRuntimeError, match="already attached"):
        eagc.attach(backbone)
    eagc.detach()
    eagc.detach()
    assert not backbone._forward_hooks
    with pytest.raises(ZeroDivisionError), eagc.attach(backbone):
        raise ZeroDivisionError
    assert not backbone._forward_hooks


def test_outside_batch_the_hook_is_identity(setup):
    backbone, _, batches, c = setup
    eagc = EAGC(c, 0.6)
    x = batches[0][0]
    with eagc.attach(backbone):
        z = backbone(x)
    assert eagc.state_for(z) is None


def test_accumulation_equals_full_batch(setup):
    backbone, head, _, c = setup
    x, y, labeled, _ = toy_batch(n=12, n_labeled=6, seed=7)
    # micro-batches with equal labeled counts: rows 0-2 + 6-8 and 3-5 + 9-11
    order = torch.tensor([0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11])
    x, y, labeled = x[order], y[order], labeled[order]
    ref = (backbone(x) + 0.1).detach()

    def additive_losses(z, rows):
        # per-row means, so two halves divided by 2 add up to the whole batch
        logits = head(z)
        sup = torch.nn.functional.cross_entropy(logits[labeled[rows]], y[rows][labeled[rows]])
        unsup = torch.special.entr(logits.softmax(1)).sum(1).mean()
        return sup + unsup

    def run(micro):
        eagc = EAGC(c, 0.6, momentum=0.8)
        backbone.zero_grad()
        head.zero_grad()
        with eagc.accumulate(len(micro)):
            for rows in micro:
                z = eagc.coordinate(backbone(x[rows]), labeled[rows], ref[rows])
                (additive_losses(z, rows) / len(micro)).backward()
        return [p.grad.clone() for p in backbone.parameters()], eagc.mu

    full, mu_full = run([slice(0, 12)])
    acc, mu_acc = run([slice(0, 6), slice(6, 12)])
    for a, b in zip(full, acc, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)
    assert float(mu_full) == pytest.approx(float(mu_acc), rel=1e-12)
    assert float(mu_full) != pytest.approx(0.6)


def test_two_forwards_keep_their_own_weights(setup):
    backbone, head, batches, c = setup
    eagc = EAGC(c, 0.6)
    (x1, y1, l1, r1), (x2, y2, l2, r2) = batches[:2]
    z1 = eagc.coordinate(backbone(x1), l1, r1)
    z2 = eagc.coordinate(backbone(x2), l2, r2)
    s1, s2 = eagc.state_for(z1), eagc.state_for(z2)
    assert s1 is not s2 and not torch.equal(s1.weights, s2.weights)
    loss = toy_losses(head, z1, y1, l1)[0] + toy_losses(head, z2, y2, l2)[1]
    loss.backward()
    assert s1.fired == 1 and s2.fired == 1


def test_state_dict_resumes_identically(setup):
    backbone, head, batches, c = setup
    a = EAGC(c, 0.6)
    eagc_grads(a, backbone, head, batches[:2])
    b = EAGC(torch.eye(c.shape[0], dtype=c.dtype), 0.1)
    b.load_state_dict(a.state_dict())
    ga = eagc_grads(a, backbone, head, batches[2:])
    gb = eagc_grads(b, backbone, head, batches[2:])
    for x, y in zip(ga[0], gb[0], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_amp_scale_multiplies_only_aga_units(setup):
    backbone, head, batches, c = setup
    x, y, labeled, ref = batches[0]

    class FakeScaler:
        def is_enabled(self):
            return True

        def scale(self, t):
            return t * 1024.0

    def grads(scaler):
        eagc = EAGC(c, 0.6)
        backbone.zero_grad()
        head.zero_grad()
        z = eagc.coordinate(backbone(x), labeled, ref, scaler=scaler)
        sup, unsup, _ = toy_losses(head, z, y, labeled)
        loss = sup + unsup
        (scaler.scale(loss) if scaler else loss).backward()
        return [p.grad.clone() for p in backbone.parameters()]

    plain, scaled = grads(None), grads(FakeScaler())
    for a, b in zip(plain, scaled, strict=True):
        torch.testing.assert_close(b / 1024.0, a, rtol=1e-9, atol=1e-12)


def test_half_precision_features_do_not_overflow(setup):
    _, _, _, c = setup
    eagc = EAGC(c.float(), 0.6)
    z = (torch.randn(8, c.shape[0]) * 300).half().requires_grad_()
    labeled = torch.arange(8) < 3
    out = eagc.coordinate(z, labeled, (z * 0.5).detach())
    # z^T C z of such rows overflows float16 (max 65504) unless computed in float32
    (out.float() * 0.01).sum().backward()
    assert z.grad.dtype == torch.float16
    assert torch.isfinite(z.grad).all()


def test_bad_shapes_name_both(setup):
    _, _, batches, c = setup
    eagc = EAGC(c, 0.6)
    z = torch.randn(4, c.shape[0], requires_grad=True, dtype=torch.float64)
    with pytest.raises(EntangleValueError, match=r"\[5, 5\].*\(4, 3\)"):
        eagc.coordinate(torch.randn(4, 3, requires_grad=True), torch.ones(4, dtype=torch.bool))
    with pytest.raises(EntangleValueError, match=r"\(3,\).*\(4, 5\)"):
        eagc.coordinate(z, torch.ones(3, dtype=torch.bool))
    with pytest.raises(EntangleValueError, match=r"\(4, 4\).*\(4, 5\)"):
        eagc.coordinate(z, torch.ones(4, dtype=torch.bool), torch.randn(4, 4))
    with pytest.raises(EntangleValueError, match="square"):
        EAGC(torch.randn(3, 4), 0.5)


def test_fit_builds_conceptor_and_mu(setup):
    backbone, _, batches, _ = setup
    loader = [(b[0], b[1]) for b in batches]
    eagc = EAGC.fit(backbone, loader, aperture=2.0)
    feats = torch.cat([backbone(b[0]) for b in batches]).detach()
    want = conceptor(feats, 2.0)
    torch.testing.assert_close(eagc.conceptor, want.float())
    e = ((feats @ want) * feats).sum(1) / feats.pow(2).sum(1)
    assert float(eagc.mu) == pytest.approx(float(e.clamp(0, 1).mean()), rel=1e-5)


def test_fit_on_simgcd_batches_uses_only_mask_lab_rows(setup):
    # SimGCD's merged train loader: (views, labels, uq_idxs, mask_lab [B, 1]); two views
    backbone, _, batches, _ = setup
    merged = []
    for x, y, labeled, _ in batches:
        views = [x, x + 0.01]
        merged.append((views, y, torch.arange(len(y)), labeled[:, None].long()))
    eagc = EAGC.fit(backbone, merged, aperture=2.0)
    with torch.no_grad():
        rows = [torch.cat([backbone(v) for v in b[0]])[b[3][:, 0].bool().repeat(2)] for b in merged]
    want = conceptor(torch.cat(rows), 2.0)
    torch.testing.assert_close(eagc.conceptor, want.float())
    # aperture="auto" reads the unlabeled rows of the same loader
    auto = EAGC.fit(backbone, merged, aperture="auto", unlabeled_loader=merged)
    with torch.no_grad():
        unl = [torch.cat([backbone(v) for v in b[0]])[~b[3][:, 0].bool().repeat(2)] for b in merged]
    expected = auto_aperture(torch.cat(rows), torch.cat(unl))
    assert auto.aperture == pytest.approx(expected)
    bad = [(x, y, torch.arange(len(y)), torch.full((len(y),), 2)) for x, y, _, _ in batches]
    with pytest.raises(EntangleValueError, match="mask_lab"):
        EAGC.fit(backbone, bad)


def test_correct_is_pure(setup):
    backbone, _, batches, c = setup
    eagc = EAGC(c, 0.6)
    x, _, labeled, ref = batches[0]
    z = backbone(x).detach()
    g = torch.randn_like(z)
    out = eagc.correct(g, z, labeled, ref)
    assert float(eagc.mu) == pytest.approx(0.6)
    assert out.shape == g.shape and not torch.equal(out, g)
    torch.testing.assert_close(eagc.correct(g, z, labeled, ref, mode="linear")[labeled], g[labeled])


@pytest.mark.gpu
def test_runs_on_cuda_and_matches_cpu(setup):
    backbone, head, batches, c = setup
    x, y, labeled, ref = batches[0]
    want = eagc_grads(EAGC(c, 0.6), backbone, head, [batches[0]])[0]
    cuda = torch.device("cuda")
    backbone_c, head_c = copy.deepcopy(backbone).to(cuda), copy.deepcopy(head).to(cuda)
    eagc = EAGC(c.to(cuda), 0.6)
    got = eagc_grads(
        eagc, backbone_c, head_c, [(x.to(cuda), y.to(cuda), labeled.to(cuda), ref.to(cuda))]
    )[0]
    assert eagc.mu.device.type == "cuda"
    for a, b in zip(got, want, strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-9)


def test_autocast_does_not_lower_the_energy_precision(setup):
    _, _, _, c = setup
    z = torch.randn(16, c.shape[0], requires_grad=True)
    labeled = torch.arange(16) < 6
    want = EAGC(c.float(), 0.6)._state(z, labeled, None, update=False, scale=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = EAGC(c.float(), 0.6)._state(z, labeled, None, update=False, scale=1.0)
    torch.testing.assert_close(got.energy, want.energy, rtol=0, atol=0)


def test_reference_on_another_device_is_a_clear_error(setup):
    _, _, _, c = setup
    eagc = EAGC(c, 0.6)
    z = torch.randn(4, c.shape[0], requires_grad=True, dtype=torch.float64)
    ref = torch.randn(4, c.shape[0], dtype=torch.float64, device="meta")
    with pytest.raises(EntangleValueError, match="same device"):
        eagc.coordinate(z, torch.ones(4, dtype=torch.bool), ref)
