"""Two-process DDP scenarios (gloo, CPU, float64) for tests/probing/test_ddp.py.

The worker runs in spawned children; the builders are shared with the parent, which
recomputes the same steps in one process. Test data and scenario code only, no assertions.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from entangle import EAGC, Probe
from entangle.metrics import conceptor
from entangle.probing.params import last_block
from tests.support.toy import toy_batch, toy_losses, toy_models

WORLD = 2
PROBE_STEPS = 2
EAGC_STEPS = 2


class ToyModel(torch.nn.Module):
    """Backbone + head in one module so DDP reduces both; forward returns the features."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.backbone(x)


# ---------------------------------------------------------------- probe scenario


def probe_model() -> ToyModel:
    return ToyModel(*toy_models(seed=0))


def probe_groups(model: ToyModel) -> dict:
    return {"last": last_block(model.backbone), "all": list(model.parameters())}


def probe_shard(rank: int, step: int):
    """Rank ``rank``'s batch at ``step``: 12 rows, 5 labeled (same size on every rank)."""
    return toy_batch(n=12, n_labeled=5, seed=100 * step + rank)


# ---------------------------------------------------------------- EAGC scenario


def eagc_setup():
    """(model, reference backbone, conceptor, initial mu), identical in every process."""
    model = ToyModel(*toy_models(seed=1))
    reference = copy.deepcopy(model.backbone)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    x, _, labeled, _ = toy_batch(n=40, n_labeled=40, seed=99)
    with torch.no_grad():
        c = conceptor(reference(x), aperture=1.5)
    return model, reference, c, 0.6


def make_eagc(c, mu) -> EAGC:
    return EAGC(c, mu, aga_weight=0.7, eep_weight=0.5, momentum=0.8)


def eagc_global_batch(step: int):
    """16 rows, rows 0-7 labeled; shard r holds labeled rows 4r..4r+3 and unlabeled 8+4r..8+4r+3."""
    x, y, labeled, _ = toy_batch(n=16, n_labeled=8, seed=50 + step)
    return x, y, labeled


def eagc_rows(rank: int) -> torch.Tensor:
    return torch.cat(
        [torch.arange(4 * rank, 4 * rank + 4), torch.arange(8 + 4 * rank, 12 + 4 * rank)]
    )


def eagc_loss(head, z, y, labeled):
    """Per-row means only (CE over labeled rows + mean row entropy): shards average exactly."""
    logits = head(z)
    sup = torch.nn.functional.cross_entropy(logits[labeled], y[labeled])
    unsup = torch.special.entr(logits.softmax(1)).sum(1).mean()
    return sup + unsup


def eagc_step(model, forward, eagc, reference, x, y, labeled):
    """One EAGC training step's gradients (``forward`` is the DDP wrapper or the model)."""
    model.zero_grad()
    with torch.no_grad():
        z_ref = reference(x)
    z = eagc.coordinate(forward(x), labeled, z_ref)
    eagc_loss(model.head, z, y, labeled).backward()
    return [p.grad.clone() for p in model.parameters()]


# ---------------------------------------------------------------- the child process


def worker(rank: int, init_file: str, out_dir: str, run_dir: str) -> None:
    """Run both scenarios under DDP on rank ``rank`` and save what the parent compares."""
    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out = {"probe": _probe_scenario(rank, run_dir), "eagc": _eagc_scenario(rank)}
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # gloo aborts a rank whose peer tears down first (no graceful close)
    finally:
        dist.destroy_process_group()


def _probe_scenario(rank: int, run_dir: str) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    model = probe_model()
    ddp = DistributedDataParallel(model)
    params = list(model.parameters())
    plain, probed, records = [], [], []
    probe = Probe(probe_groups(model), run=run_dir)
    for step in range(PROBE_STEPS):
        x, y, labeled, novel = probe_shard(rank, step)
        model.zero_grad()
        sup, unsup, _ = toy_losses(model.head, ddp(x), y, labeled)
        (sup + unsup).backward()
        plain.append([p.grad.clone() for p in params])

        model.zero_grad()
        z = ddp(x)
        sup, unsup, logits = toy_losses(model.head, z, y, labeled)
        records.append(
            probe.backward(
                sup,
                unsup,
                features=z,
                labeled=labeled,
                novel=novel,
                logits=logits,
                extra={"rank": rank},
            )
        )
        probed.append([p.grad.clone() for p in params])
    probe.close()
    return {"plain": plain, "probed": probed, "records": records, "has_run": probe.run is not None}


def _eagc_scenario(rank: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    model, reference, c, mu = eagc_setup()
    ddp = DistributedDataParallel(model)
    eagc = make_eagc(c, mu)
    rows = eagc_rows(rank)
    grads, mus = [], []
    for step in range(EAGC_STEPS):
        x, y, labeled = eagc_global_batch(step)
        grads.append(eagc_step(model, ddp, eagc, reference, x[rows], y[rows], labeled[rows]))
        mus.append(eagc.mu.clone())
    return {"grads": grads, "mu": mus}
