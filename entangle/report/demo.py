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
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.gcd.config import VARIANTS
from entangle.gcd.train import TrainConfig, ensure_reference, prepare, train
from entangle.report.build import build_report

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


def _fresh_runs_dir(out: Path, force: bool) -> Path:
    """``out/runs``, emptied when ``force``; an earlier demo's runs are never mixed in."""
    runs_dir = out / "runs"
    if runs_dir.exists():
        if not force:
            raise EntangleValueError(
                f"{runs_dir} already holds demo runs; pass --force to replace them or choose "
                "another --out"
            )
        shutil.rmtree(runs_dir)
    return runs_dir


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
        (end to end), ``runs_seconds`` (until the last run finished, before the report).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise EntangleValueError(
            f"demo variants {unknown or '(none)'} unknown; choose from {', '.join(VARIANTS)}"
        )
    out = Path(out)
    runs_dir = _fresh_runs_dir(out, force)
    config = dataclasses.replace(
        DEMO_CONFIG,
        device=device,
        seed=seed,
        epochs=epochs or DEMO_CONFIG.epochs,
        aperture=DEMO_CONFIG.aperture if aperture is None else aperture,
    )
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
    summaries = {}
    for name in variants:
        cfg = dataclasses.replace(config, **VARIANTS[name])
        summaries[name] = train(
            cfg,
            runs_dir / name,
            setup,
            name=name,
            on_step=lambda s, total, _loss, name=name: note(f"train {name}", s, total, ""),
        )
    runs_seconds = time.perf_counter() - started
    report_path = None
    if report:
        note("report", 0, 1, "")
        report_path = build_report([runs_dir / v for v in variants], out / "report", seed=seed)
        note("report", 1, 1, "")
    return {
        "summaries": summaries,
        "report": report_path,
        "seconds": time.perf_counter() - started,
        "runs_seconds": runs_seconds,
        "device": str(setup.device),
    }
