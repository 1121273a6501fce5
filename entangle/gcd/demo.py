"""The demo: the whole story on the embedded digits data, baseline vs EAGC from one start."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.gcd.train import TrainConfig, ensure_reference, prepare, train

DEMO_CONFIG = TrainConfig(
    data="digits",
    epochs=6,
    pretrain_epochs=15,
    reference_epochs=15,
    warmup_teacher_epochs=3,
    probe_every=1,
    probeset_every=10,
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
) -> dict:
    """Pretrain, train the reference, then baseline and +EAGC from the same weights; report.

    Args:
        out: demo folder: runs go to ``out/runs/{baseline,eagc}``, the report to ``out/report``.
        device: ``"auto"`` uses CUDA when present.
        seed: fixes data split, pretraining and both runs.
        epochs: GCD training epochs (default: the demo's).
        force: replace an earlier demo's runs in ``out``.
        report: build the HTML/PNG report.
        progress: ``progress(stage, done, total, note)``.
        aperture: conceptor aperture, a number or ``"auto"`` (default: the paper's 2.0).

    Returns:
        dict with ``summaries`` {run name: summary}, ``report`` (path or None), ``seconds``.
    """
    out = Path(out)
    runs_dir = out / "runs"
    if runs_dir.exists():
        if not force:
            raise EntangleValueError(
                f"{runs_dir} already holds demo runs; pass --force to replace them or choose "
                "another --out"
            )
        shutil.rmtree(runs_dir)
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
    for name, cfg in (
        ("baseline", config),
        ("eagc", dataclasses.replace(config, eagc=True)),
    ):
        summaries[name] = train(
            cfg,
            runs_dir / name,
            setup,
            name=name,
            on_step=lambda s, total, name=name: note(f"train {name}", s, total, ""),
        )
    report_path = None
    if report:
        from entangle.report import build_report

        note("report", 0, 1, "")
        report_path = build_report(
            [runs_dir / "baseline", runs_dir / "eagc"], out / "report", seed=seed
        )
        note("report", 1, 1, "")
    return {
        "summaries": summaries,
        "report": report_path,
        "seconds": time.perf_counter() - started,
        "device": str(setup.device),
    }
