"""``entangle bench --scaling``: how each instrument's cost grows with its work.

Each curve point builds one bench fixture (:class:`entangle.bench.models.BenchFixture`, the
digits MLP: its plain step is the unit) and times the instrument and the plain step side by
side, round-robin, in this process, so every value is a ratio measured under the same load:

- ``probe_vs_batch``: ``Probe(every=1)`` step / plain step, by batch size;
- ``attribution_vs_batch``: (attributed probed step - probed step) / plain step, by batch;
- ``probe_vs_group``: ``Probe(every=1)`` step / plain step when the last 1, 2 or 4 blocks
  train and are the probed group;
- ``probeset_vs_size``: ``ProbeSet`` SOC / plain step and full re-embedding / plain step, by
  probe-set size (the re-embedding is what the reference code pays, linear in the set);
- ``eagc_vs_dim``: EAGC step (shared prefix) / plain step, by feature dimension;
- ``knn_vs_points`` and ``tsne_vs_points``: seconds of one k-NN overlap / one t-SNE map by
  number of points, and the same in plain steps of the default MLP.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from entangle.bench.models import BenchFixture, mlp_spec
from entangle.bench.run import _load, _time_round_robin
from entangle.metrics import knn_overlap
from entangle.models.backbones import build_backbone, freeze_prefix
from entangle.probing.probe import Probe

# the points of each curve: (full, quick)
BATCHES = ((32, 128, 512), (8, 16))
GROUPS = ((1, 2, 4), (1, 2))
PROBE_SETS = ((256, 1024, 4096), (32, 64))
DIMS = ((64, 128, 256, 512), (16, 32))
KNN_POINTS = ((1000, 5000, 20000, 100000), (200, 400))
TSNE_POINTS = ((1000, 5000, 20000), (100,))


def _spec(batch=None, probe_set=None, dim=128, blocks=1, depth=4):
    spec = mlp_spec(batch, False, probe_set)
    spec = dataclasses.replace(
        spec,
        description=f"digits MLP: D={dim}, depth={depth}, {blocks} trainable",
        backbone=lambda: build_backbone("digits-mlp", in_dim=64, dim=dim, depth=depth),
    )
    return spec, blocks


class _GroupFixture(BenchFixture):
    """A bench fixture whose last ``blocks`` blocks train and form the probed group."""

    def __init__(self, spec, device, blocks: int):
        super().__init__(spec, device)
        if blocks > 1:
            freeze_prefix(self.backbone, blocks)
            self.params = [
                p for m in (self.backbone, self.head) for p in m.parameters() if p.requires_grad
            ]
            self.opt = torch.optim.SGD(self.params, lr=1e-4, momentum=0.9)
            group = [p for b in self.backbone.blocks[-blocks:] for p in b.parameters()]
            self.probe_every_step = Probe({"last_blocks": group}, every=1)


def _ratios(fixture, names, rounds) -> dict[str, float]:
    variants = {k: v for k, v in fixture.variants().items() if k in {"plain", *names}}
    times = _time_round_robin(variants, rounds, 1, lambda: None, time.perf_counter)
    plain = times["plain"]
    return {
        name: statistics.median(t / p for t, p in zip(times[name], plain, strict=True))
        for name in names
    }


def _seconds(fn: Callable[[], object], rounds: int) -> float:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def run_scaling(
    *, quick: bool = False, rounds: int = 3, progress: Callable[[str], None] | None = None
) -> dict:
    """Every curve of the module docstring on the CPU (one thread), as lists of points.

    Returns:
        ``{"curves": {name: [{"x": ..., <ratio keys>...}, ...]}, "load": [{"stage", "load"}],
        "settings": {...}}``; ``load`` is ``os.getloadavg()`` as each point starts.
    """
    loads = [{"stage": "start", "load": _load()}]

    def say(message: str) -> None:
        # the 1/5/15-minute load average as each curve point starts: the ratios are taken
        # side by side, but the seconds of k-NN and t-SNE move with the load
        loads.append({"stage": message.removeprefix("scaling: "), "load": _load()})
        if progress is not None:
            progress(message)

    pick = 1 if quick else 0
    device = torch.device("cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    curves: dict[str, list[dict]] = {
        k: []
        for k in (
            "probe_vs_batch",
            "attribution_vs_batch",
            "probe_vs_group",
            "probeset_vs_size",
            "eagc_vs_dim",
            "knn_vs_points",
            "tsne_vs_points",
        )
    }
    try:
        for batch in BATCHES[pick]:
            say(f"scaling: batch {batch}")
            fixture = BenchFixture(_spec(batch=batch)[0], device)
            r = _ratios(fixture, ["probe_every_step", "probe_attribution"], rounds)
            curves["probe_vs_batch"].append({"x": batch, "ratio": r["probe_every_step"]})
            extra = r["probe_attribution"] - r["probe_every_step"]
            curves["attribution_vs_batch"].append({"x": batch, "ratio": extra})
        for blocks in GROUPS[pick]:
            say(f"scaling: probed group of {blocks} blocks")
            spec, _ = _spec(blocks=blocks)
            fixture = _GroupFixture(spec, device, blocks)
            r = _ratios(fixture, ["probe_every_step"], rounds)
            curves["probe_vs_group"].append({"x": blocks, "ratio": r["probe_every_step"]})
        for size in PROBE_SETS[pick]:
            say(f"scaling: probe set of {size}")
            fixture = BenchFixture(_spec(probe_set=size)[0], device)
            r = _ratios(fixture, ["probeset_soc", "full_reembed"], rounds)
            curves["probeset_vs_size"].append(
                {"x": size, "probeset": r["probeset_soc"], "full_reembed": r["full_reembed"]}
            )
        for dim in DIMS[pick]:
            say(f"scaling: EAGC at D={dim}")
            fixture = BenchFixture(_spec(dim=dim)[0], device)
            r = _ratios(fixture, ["eagc_shared_prefix"], rounds)
            curves["eagc_vs_dim"].append({"x": dim, "ratio": r["eagc_shared_prefix"]})
        unit = BenchFixture(_spec()[0], device)
        plain_s = _seconds(unit.plain, 5 * rounds)
        _points(curves, pick, rounds, plain_s, say)
    finally:
        torch.set_num_threads(previous)
    loads.append({"stage": "end", "load": _load()})
    return {
        "curves": curves,
        "load": loads,
        "settings": {
            "device": "cpu",
            "threads": 1,
            "rounds": rounds,
            "quick": quick,
            "model": "digits MLP (D=128, depth 4, batch 128, last block) unless a curve varies it",
        },
    }


def _points(curves, pick, rounds, plain_s, say) -> None:
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.tsne import tsne_embed

    rng = np.random.default_rng(0)
    for n in KNN_POINTS[pick]:
        say(f"scaling: k-NN overlap of {n} points")
        x = torch.from_numpy(rng.normal(size=(n, 128)).astype(np.float32))
        novel = torch.arange(n) % 2 == 0
        # brute force is quadratic: 100k points take about a minute, timed once
        s = _seconds(lambda x=x, novel=novel: knn_overlap(x, novel), rounds if n <= 20000 else 1)
        curves["knn_vs_points"].append({"x": n, "seconds": s, "plain_steps": s / plain_s})
    for n in TSNE_POINTS[pick]:
        say(f"scaling: t-SNE map of {n} points")
        x = rng.normal(size=(n, 50)) + 3 * rng.normal(size=(10, 50))[rng.integers(0, 10, n)]
        s = _seconds(lambda x=x, n=n: tsne_embed(x, seed=0, max_points=n, threads=1), 1)
        curves["tsne_vs_points"].append({"x": n, "seconds": s, "plain_steps": s / plain_s})


def scaling_figure(result: dict):
    """One panel per curve: the ratio (or plain-step equivalents) against the curve's x."""
    # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
    from entangle.report.figures import new_figure, style, suptitle

    panels = [
        ("probe_vs_batch", ["ratio"], "batch size", "probed step / plain step"),
        ("attribution_vs_batch", ["ratio"], "batch size", "attribution extra, plain steps"),
        ("probe_vs_group", ["ratio"], "trainable = probed blocks", "probed step / plain step"),
        ("probeset_vs_size", ["probeset", "full_reembed"], "probe-set rows", "plain steps"),
        ("eagc_vs_dim", ["ratio"], "feature dimension D", "EAGC step / plain step"),
        ("knn_vs_points", ["plain_steps"], "points", "k-NN overlap, plain steps"),
        ("tsne_vs_points", ["plain_steps"], "points", "t-SNE map, plain steps"),
    ]
    with style():
        fig, axes = new_figure(2, 4, panel=(3.6, 2.9))
        for ax, (name, keys, xlabel, ylabel) in zip(axes.flat, panels, strict=False):
            points = result["curves"].get(name, [])
            xs = [p["x"] for p in points]
            for key in keys:
                ax.plot(xs, [p[key] for p in points], marker="o", label=key.replace("_", " "))
            if len(keys) > 1 or name in ("knn_vs_points", "tsne_vs_points", "probeset_vs_size"):
                ax.set_yscale("log")
            if len(keys) > 1:
                ax.legend(fontsize="small")
            ax.set_xscale("log", base=2)
            ax.set_title(name.replace("_", " "), fontsize="small")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        axes.flat[-1].axis("off")
        suptitle(fig, "Cost of each instrument as its work grows (digits MLP, CPU, one thread)")
        return fig
