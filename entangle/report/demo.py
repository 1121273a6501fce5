"""The demo: the whole story on the embedded digits data, two baselines vs EAGC's variants.

Every run starts from one prepared setup (pretrained backbone, fresh head, one reference
model): ``baseline`` from the pretrained weights (the paper's SimGCD baseline),
``baseline-reference`` from the reference model (EAGC's warm start without the
coordination), then ``eagc``, ``aga``, ``eep`` and ``eagc-fixed`` from the reference model as
the EAGC authors do; so the report separates "warm start on labeled data" from
"coordination" (see docs/protocol.md). It lives with the report it ends in: it drives the
recipe (gcd/) and then report/'s build_report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from entangle.errors import EntangleValueError
from entangle.gcd.config import VARIANTS
from entangle.gcd.train import TrainConfig, ensure_reference, prepare, train
from entangle.report.build import build_report
from entangle.report.cache import ReportCache
from entangle.report.load import load_runs
from entangle.report.precompute import ReportMaps, start_report_maps
from entangle.runs.io import make_dir, make_temp_dir, remove_tree

DEMO_CONFIG = TrainConfig(
    data="digits",
    epochs=6,
    pretrain_epochs=15,
    reference_epochs=15,
    probe_every=1,
    probeset_every=10,
)
# the demo's runs, in the report's order (the first is what the others are compared with)
DEMO_VARIANTS = ("baseline", "baseline-reference", "eagc", "aga", "eep", "eagc-fixed")
# the report's t-SNE settings, given to build_report and to the maps computed early alike, so
# that the report finds each early map under the key it would compute it for
TSNE_SETTINGS = {"max_points": 20000, "backend": "auto"}
EARLY_PREFIX = ".early-maps-"


class _EarlyMaps:
    """The t-SNE map of each finished run, computing in a worker process while the demo
    trains the next run, into a cache folder the report then reads (``cache_from``).

    The map is keyed by the features file's content hash and the t-SNE settings
    (:class:`entangle.report.maps.MapJob`), so the report's cache hit is exactly the map it
    would have computed itself.
    """

    def __init__(self, out: Path, seed: int):
        self.seed = seed
        self.folder = make_temp_dir(make_dir(out), EARLY_PREFIX)
        self.cache = ReportCache(None, self.folder)
        self.inflight: list[ReportMaps] = []

    def start(self, run_dir: Path) -> None:
        maps = start_report_maps(
            load_runs([run_dir]),
            self.cache,
            seed=self.seed,
            workers=1,
            background=True,
            max_points=TSNE_SETTINGS["max_points"],
            backend=TSNE_SETTINGS["backend"],
        )
        self.inflight.append(maps)

    def finish(self) -> None:
        """Wait for every map and store it in the cache."""
        for maps in self.inflight:
            maps.maps.results()

    def close(self) -> None:
        for maps in self.inflight:
            maps.close()
        remove_tree(self.folder)


def _training_threads(threads: int, maps_running: bool) -> int:
    """torch threads for a run's training: one core is left to the map worker (the worker is
    single-threaded; two training threads beside it oversubscribe a 2-core machine)."""
    return max(1, threads - 1) if maps_running else threads


def _fresh_runs_dir(out: Path, force: bool) -> Path:
    """``out/runs``, emptied when ``force``; an earlier demo's runs are never mixed in."""
    runs_dir = out / "runs"
    if os.path.lexists(runs_dir):
        if not force:
            raise EntangleValueError(
                f"{runs_dir} already holds demo runs; pass --force to replace them or choose "
                "another --out"
            )
        remove_tree(runs_dir)  # a symlink there is refused, never emptied
    return runs_dir


def _train_runs(config, setup, runs_dir: Path, variants, early: _EarlyMaps | None, note) -> dict:
    """Train every variant from the shared setup; each finished run's map (but the last's,
    left to the report, whose workers draw it beside its other figures) starts in ``early``
    while the next run trains. Returns ``{run name: summary}``."""
    summaries = {}
    threads = torch.get_num_threads()
    try:
        for i, name in enumerate(variants):
            cfg = dataclasses.replace(config, **VARIANTS[name])
            # torch's CPU reductions round differently on another thread count (measured on the
            # demo: accuracies equal, probe numbers move ~1e-7), so the count follows a fixed
            # rule, not whether a worker still runs: one demo's records equal the next one's
            torch.set_num_threads(_training_threads(threads, early is not None and i > 0))
            summaries[name] = train(
                cfg,
                runs_dir / name,
                setup,
                name=name,
                on_step=lambda s, total, _loss, name=name: note(f"train {name}", s, total, ""),
            )
            if early is not None and i < len(variants) - 1:
                early.start(runs_dir / name)
    finally:
        torch.set_num_threads(threads)
    return summaries


def _build(runs_dir: Path, variants, out: Path, seed: int, early: _EarlyMaps | None) -> Path:
    """The demo's report, reading the maps ``early`` computed from its cache."""
    return build_report(
        [runs_dir / v for v in variants],
        out,
        seed=seed,
        tsne_max_points=TSNE_SETTINGS["max_points"],
        tsne_backend=TSNE_SETTINGS["backend"],
        cache_from=[] if early is None else [early.folder],
    )


def run_demo(
    out,
    *,
    device: str = "auto",
    seed: int = 0,
    epochs: int | None = None,
    force: bool = False,
    report: bool = True,
    progress: Callable[[str, int, int, str], None] | None = None,
    aperture: float | str | None = None,
    variants: Sequence[str] = DEMO_VARIANTS,
) -> dict:
    """Pretrain, train the reference, then every variant from the shared setup; report.

    Args:
        out: demo folder: runs go to ``out/runs/<variant>``, the report to ``out/report``.
        device: ``"auto"`` uses CUDA when present.
        seed: fixes data split, pretraining and both runs.
        epochs: GCD training epochs (default: the demo's).
        force: replace an earlier demo's runs in ``out``.
        report: build the HTML/PNG report.
        progress: ``progress(stage, done, total, note)``.
        aperture: conceptor aperture, a number or ``"auto"`` (default: the paper's 2.0).
        variants: the runs, names of ``entangle.gcd.config.VARIANTS`` (default
            :data:`DEMO_VARIANTS`: both baselines and EAGC's four variants).

    Returns:
        dict with ``summaries`` {run name: summary}, ``report`` (path or None), ``seconds``
        (end to end), ``runs_seconds`` (until the last run finished, before the report; the
        t-SNE maps of all runs but the last are computed early, while the next run trains).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise EntangleValueError(
            f"demo variants {unknown or '(none)'} unknown; choose from {', '.join(VARIANTS)}"
        )
    # the demo's folder, never a symlink: its runs/ and report/ would be written into the target
    out = make_dir(Path(out))
    runs_dir = _fresh_runs_dir(out, force)
    config = dataclasses.replace(
        DEMO_CONFIG, device=device, seed=seed, epochs=epochs or DEMO_CONFIG.epochs
    )
    if aperture is not None:
        config = dataclasses.replace(config, aperture=aperture)
    started = time.perf_counter()
    note = progress or (lambda *a: None)
    setup = prepare(
        config,
        progress=lambda stage, e, loss: note(stage, e + 1, config.pretrain_epochs, f"{loss:.3f}"),
    )
    ensure_reference(
        config,
        setup,
        progress=lambda stage, e, loss: note(stage, e + 1, config.reference_epochs, f"{loss:.3f}"),
    )
    early = _EarlyMaps(out, seed) if report and len(variants) > 1 else None
    try:
        summaries = _train_runs(config, setup, runs_dir, variants, early, note)
        runs_seconds = time.perf_counter() - started
        report_path = None
        if report:
            if early is not None:
                early.finish()
            note("report", 0, 1, "")
            report_path = _build(runs_dir, variants, out / "report", seed, early)
            note("report", 1, 1, "")
    finally:
        if early is not None:
            early.close()
    return {
        "summaries": summaries,
        "report": report_path,
        "seconds": time.perf_counter() - started,
        "runs_seconds": runs_seconds,
        "device": str(setup.device),
    }
