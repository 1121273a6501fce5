"""train_reference: the EAGC authors' reference model, SimGCD heads and batches accepted."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entangle.errors import EntangleValueError
from entangle.gcd.reference import clone_module, train_reference


class SimGCDHead(nn.Module):
    """The shape of CVMI-Lab/SimGCD model.py's DINOHead: an MLP projector and a legacy
    ``nn.utils.weight_norm`` cosine classifier (g fixed at 1) on the normalised input."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 16, bottleneck: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        with warnings.catch_warnings():  # deprecated in torch, but what SimGCD's head uses
            warnings.simplefilter("ignore", FutureWarning)
            self.last_layer = nn.utils.weight_norm(nn.Linear(in_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        return self.mlp(x), self.last_layer(F.normalize(x, dim=-1))


def _models(num_old: int = 3):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 10))
    backbone[0].requires_grad_(False)  # a frozen prefix, as SimGCD freezes blocks 0-10
    return backbone, SimGCDHead(10, num_old)


def _simgcd_batches(n_batches=3, b=8, num_old=3, seed=0):
    """Batches shaped like SimGCD's train loader: (views, labels, uq_idxs, mask_lab [b, 1])."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        views = [torch.randn(b, 6, generator=g), torch.randn(b, 6, generator=g)]
        mask = torch.rand(b, generator=g) < 0.5
        mask[0] = True
        # unlabeled rows may hold novel classes (>= num_old): never read
        labels = torch.where(mask, torch.randint(0, num_old, (b,), generator=g), 7)
        out.append((views, labels, torch.arange(b) + i * b, mask[:, None].to(torch.int64)))
    return out


def test_simgcd_weight_norm_head_is_copied_and_left_untouched():
    backbone, head = _models()
    with pytest.raises(RuntimeError, match="graph leaves"):
        import copy

        copy.deepcopy(head)  # why train_reference cannot simply deepcopy
    before = {k: v.clone() for k, v in head.state_dict().items()}
    ref_b, ref_h = train_reference(backbone, head, _simgcd_batches(), epochs=2, lr=0.1)
    for k, v in head.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = [
        k for k, v in ref_h.state_dict().items() if not torch.equal(v, before[k].to(v.device))
    ]
    assert "last_layer.weight_v" in changed and "last_layer.weight_g" not in changed
    assert torch.equal(ref_b[0].weight, backbone[0].weight)  # the frozen prefix is shared
    assert not torch.equal(ref_b[2].weight, backbone[2].weight)
    assert not any(p.requires_grad for m in (ref_b, ref_h) for p in m.parameters())
    assert not ref_b.training and not ref_h.training
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert ref_h(ref_b(x))[1].shape == (4, 3)
    # the copy is independent: a second copy of the trained head is possible and equal
    again = clone_module(ref_h)
    with torch.no_grad():
        torch.testing.assert_close(again(ref_b(x))[1], ref_h(ref_b(x))[1])


def test_mask_lab_rows_alone_train_both_views():
    """SimGCD batches train exactly like the authors' labeled batches of the masked rows."""
    backbone, head = _models()
    full = _simgcd_batches()
    labeled_only = []
    for views, labels, idx, mask in full:
        keep = mask[:, 0].bool()
        labeled_only.append(([v[keep] for v in views], labels[keep], idx[keep]))
    a = train_reference(backbone, head, full, epochs=2, lr=0.1, weight_decay=1e-4)
    b = train_reference(backbone, head, labeled_only, epochs=2, lr=0.1, weight_decay=1e-4)
    for m_a, m_b in zip(a, b, strict=True):
        for (k, va), vb in zip(m_a.state_dict().items(), m_b.state_dict().values(), strict=True):
            torch.testing.assert_close(va, vb, msg=k)
    # and (x, y) batches of the stacked views are the same data again
    stacked = [(torch.cat(v), y.repeat(2)) for v, y, _ in labeled_only]
    c = train_reference(backbone, head, stacked, epochs=2, lr=0.1, weight_decay=1e-4)
    torch.testing.assert_close(c[1].last_layer.weight_v, b[1].last_layer.weight_v)


def test_labels_outside_the_old_classes_and_bad_batches_are_clear_errors():
    backbone, head = _models(num_old=3)
    bad = [(torch.randn(4, 6), torch.tensor([0, 1, 2, 5]))]
    with pytest.raises(EntangleValueError, match="0..n_old-1"):
        train_reference(backbone, head, bad, epochs=1)
    with pytest.raises(EntangleValueError, match="a batch must be"):
        train_reference(backbone, head, [torch.randn(4, 6)], epochs=1)


def test_progress_bar_counts_epochs_with_the_loss_and_is_off_by_default_off_a_terminal(capfd):
    """A README loop calling train_reference ran silently for minutes (issue 22)."""
    backbone, head = _models()
    losses = []
    a = train_reference(backbone, head, _simgcd_batches(), epochs=3, lr=0.1, progress=True)
    err = capfd.readouterr().err
    assert "reference epoch 3/3" in err and "eta" in err
    assert "loss " in err  # the last epoch's mean loss
    train_reference(
        backbone, head, _simgcd_batches(), epochs=3, lr=0.1, on_epoch=lambda e, x: losses.append(x)
    )
    assert capfd.readouterr().err == ""  # stderr is not a terminal here: no bar by default
    assert len(losses) == 3 and f"loss {losses[-1]:.4f}" in err  # the bar showed the same loss
    assert a[1].last_layer.weight_v.shape == (3, 10)
