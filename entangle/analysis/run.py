"""``analyze``: diagnose saved GCD checkpoints into run directories and one report.

For each checkpoint: load it safely (format detected), embed the data, compute clustering
accuracy (head argmax and k-means), SOC / principal angles / energies / k-NN overlap, probe
the gradients of the SimGCD objective raw and with EAGC, and write a run directory::

    OUT/<checkpoint name>/   run.json (config: checkpoint, format, class_names, ...),
                             steps.jsonl (probe records), epochs.jsonl (one record),
                             features/epoch_000.npz, DONE (the summary)
    OUT/report/              the HTML/PNG report over all of them
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from entangle.analysis.config import AnalyzeConfig
from entangle.analysis.inputs import FeatureData, load_inputs

# CheckpointAnalysis, analyze_one and summarize lived here before one.py: re-exported
from entangle.analysis.one import CheckpointAnalysis as CheckpointAnalysis
from entangle.analysis.one import Progress, analyze_one
from entangle.analysis.one import summarize as summarize
from entangle.checkpoints import (
    LoadedCheckpoint,
    load_gcd_checkpoint,
)
from entangle.data.datasets import GCDData
from entangle.errors import EntangleValueError
from entangle.nn.devices import resolve_device
from entangle.runs.directory import RunReader
from entangle.runs.io import refuse_symlink
from entangle.runs.untrusted import safe_name


@dataclass
class AnalysisResult:
    """Every checkpoint's analysis and the report built over them (None when skipped)."""

    analyses: list[CheckpointAnalysis]
    report: Path | None
    device: str


def _run_name(path: str | None, data: str, taken: set[str]) -> str:
    base = Path(path).stem if path else Path(data.partition(":")[2] or data).stem
    # a file named "...pt" has the stem "..": never let a user's name leave ``out``
    base = safe_name(base, fallback="checkpoint")
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def analyze(
    checkpoints: Sequence[str | Path],
    out: str | Path,
    config: AnalyzeConfig | None = None,
    *,
    data: GCDData | FeatureData | None = None,
    progress: Progress | None = None,
    on_loaded: Callable[[str, LoadedCheckpoint], None] | None = None,
) -> AnalysisResult:
    """Analyse each checkpoint on the same data; write one run per checkpoint and a report.

    Args:
        checkpoints: checkpoint files (may be empty with ``features:`` data: the features
            file alone is analysed).
        out: output folder; runs go to ``out/<checkpoint stem>``, the report to
            ``out/report``. Existing runs are never overwritten: a rerun skips the finished
            ones and redoes the unfinished ones (same checkpoints and settings only).
        config: the settings (:class:`AnalyzeConfig`).
        data: already loaded data (e.g. a custom in-memory source) instead of
            ``config.data``.
        progress: ``progress(stage, done, total, note)`` for display.
        on_loaded: called with ``(path, loaded)`` after each checkpoint loads (to print
            the detected format early).

    Raises:
        CheckpointError: unsafe, corrupt or mismatching checkpoint; a head inconsistent with
            the data's classes.
        EntangleValueError: data source errors, existing run directories.
    """
    config = config or AnalyzeConfig()
    device = resolve_device(config.device)
    if data is None:
        data = _load_data(config)
    if not checkpoints and not isinstance(data, FeatureData):
        raise EntangleValueError(
            "no checkpoint given; pass one or more checkpoint files (only features:FILE.npz "
            "data can be analysed without one)"
        )
    out = Path(out)
    # --out holds the run folders and report/: a symlink there is refused before any write
    # (the run folders were written into its target before the report refused it)
    refuse_symlink(out)
    reference = None
    if config.reference and config.grad and not isinstance(data, FeatureData):
        ref = load_gcd_checkpoint(
            config.reference, trust=config.trust_checkpoint, model_factory=config.model
        )
        reference = ref.backbone.to(device)
    taken: set[str] = set()
    analyses = []
    for path in list(checkpoints) or [None]:
        run_dir = out / _run_name(None if path is None else str(path), config.data, taken)
        analyses.append(
            _analyze_path(path, run_dir, data, config, device, reference, progress, on_loaded)
        )
    report = None
    if config.report:
        # lazy: entangle.report loads scipy (~2 s), needed only for a figure or report
        from entangle.report import build_report

        report = build_report(
            [a.run_dir for a in analyses],
            out / "report",
            seed=config.seed,
            tsne_max_points=config.tsne_max_points,
        )
    return AnalysisResult(analyses, report, str(device))


def _load_data(config: AnalyzeConfig) -> GCDData | FeatureData:
    """The data ``config.data`` names, split as the settings say."""
    return load_inputs(
        config.data,
        old_classes=config.old_classes,
        labeled_fraction=config.labeled_fraction,
        seed=config.seed,
        max_samples=config.max_samples,
        labeled_split=config.labeled_split,
    )


def _analyze_path(
    path, run_dir: Path, data, config: AnalyzeConfig, device, reference, progress, on_loaded
) -> CheckpointAnalysis:
    """One checkpoint (``None``: the features file alone) into ``run_dir``: skipped when an
    earlier run finished it, redone when one left it unfinished."""
    loaded = None
    state = _earlier_run(run_dir, path, config)
    if state == "done":  # a rerun after a failure or a kill skips what finished
        return _finished_analysis(run_dir, path)
    if path is not None:
        loaded = load_gcd_checkpoint(
            path,
            trust=config.trust_checkpoint,
            model_factory=config.model,
            format=config.checkpoint_format,
            head=config.head_file,
        )
        if on_loaded is not None:
            on_loaded(str(path), loaded)
    return analyze_one(
        loaded,
        path,
        data,
        run_dir,
        config,
        device,
        reference,
        progress,
        resume=state == "unfinished",
    )


# settings that change what an analysis shows but not its run directory's numbers, and
# those run.json stores resolved (class ids, the epoch's temperature) rather than as given
_OUTPUT_ONLY = ("report", "device", "trust_checkpoint", "old_classes", "teacher_temperature")


def _earlier_run(run_dir: Path, path, config: AnalyzeConfig) -> str | None:
    """``"done"``, ``"unfinished"`` or None (no earlier run) for ``run_dir``.

    Raises:
        EntangleValueError: the run there analysed another checkpoint or other settings.
    """
    if not (run_dir / "run.json").exists():
        return None
    stored = RunReader(run_dir).config or {}
    checkpoint = None if path is None else str(Path(path).resolve())
    want = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples read back as lists
    differ = [k for k in want if k not in _OUTPUT_ONLY and k in stored and stored[k] != want[k]]
    if stored.get("checkpoint") != checkpoint:
        differ.insert(0, "checkpoint")
    if differ:
        raise EntangleValueError(
            f"{run_dir} holds an analysis of {stored.get('checkpoint') or stored.get('data')} "
            f"with other settings ({', '.join(differ)} differ); rerun with the same "
            "checkpoints and options to resume it, or pass another --out"
        )
    return "done" if (run_dir / "DONE").exists() else "unfinished"


def _finished_analysis(run_dir: Path, path) -> CheckpointAnalysis:
    reader = RunReader(run_dir)
    summary = reader.summary or {}
    notes = list((reader.epochs[-1] if reader.epochs else {}).get("notes") or [])
    notes.append("finished in an earlier run of analyze: not redone")
    return CheckpointAnalysis(
        None if path is None else str(path), run_dir, summary.get("format"), summary, notes
    )
