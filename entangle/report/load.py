"""Open the run directories of a report and give each a unique display name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.runs.directory import RunReader
from entangle.runs.records import default_group, gradient_groups


@dataclass
class RunData:
    """One run as the report sees it (records already read; features loaded on demand)."""

    name: str
    path: Path
    reader: object  # entangle.runs.directory.RunReader
    steps: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    group: str = ""
    warnings: list = field(default_factory=list)

    @property
    def meta(self) -> dict:
        return self.reader.meta

    @property
    def config(self) -> dict:
        config = self.reader.config
        return config if isinstance(config, dict) else {}

    @property
    def complete(self) -> bool:
        return self.reader.complete

    @property
    def has_eagc(self) -> bool:
        return bool(gradient_groups(self.steps, "eagc"))

    @property
    def is_analysis(self) -> bool:
        """True for an ``entangle analyze`` run: one frozen checkpoint, whose "steps" are
        gradient batches of the same weights (entangle/analysis/run.py), not training."""
        return "checkpoint" in self.config and "grad_batches" in self.config

    @property
    def checkpoint_epoch(self):
        """The epoch the analysed checkpoint's own file records (None when it records none)."""
        meta = self.config.get("checkpoint_meta")
        epoch = meta.get("epoch") if isinstance(meta, dict) else None
        return epoch if isinstance(epoch, int | float) and not isinstance(epoch, bool) else None

    def epoch_label(self, epoch) -> str:
        """``epoch 3`` for a training run; ``checkpoint (epoch 5)`` for an analysed checkpoint,
        whose saved features are numbered 0 whatever epoch the checkpoint was saved at."""
        if not self.is_analysis:
            return f"epoch {epoch}"
        own = self.checkpoint_epoch
        return "checkpoint (epoch not recorded)" if own is None else f"checkpoint (epoch {own:g})"


def is_analysis(run) -> bool:
    """:attr:`RunData.is_analysis` of any run-like object (False for one without a config)."""
    return bool(getattr(run, "is_analysis", False))


def epoch_label(run, epoch) -> str:
    """:meth:`RunData.epoch_label` of any run-like object (``epoch N`` for one without)."""
    label = getattr(run, "epoch_label", None)
    return label(epoch) if callable(label) else f"epoch {epoch}"


def load_runs(paths: Sequence, names: Sequence[str] | None = None) -> list[RunData]:
    """Read every run directory; names default to the runs' own names, made unique.

    Raises:
        EntangleValueError: no runs, a path that is not a run directory, or a ``names`` list
            of the wrong length.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise EntangleValueError("build_report: no runs given; pass at least one run directory")
    if names is not None and len(names) != len(paths):
        raise EntangleValueError(
            f"got {len(names)} names for {len(paths)} runs; give one name per run or none"
        )
    runs, seen = [], set()
    for i, path in enumerate(paths):
        if not path.is_dir():
            raise EntangleValueError(
                f"run directory {path} does not exist; pass a folder written by RunWriter"
            )
        reader = RunReader(path)
        name = str(names[i]) if names is not None else str(reader.name)
        unique, k = name, 2
        while unique in seen:
            unique, k = f"{name} ({k})", k + 1
        seen.add(unique)
        runs.append(
            RunData(
                name=unique,
                path=path,
                reader=reader,
                steps=list(reader.steps),
                epochs=list(reader.epochs),
                group=default_group(reader.steps),
                warnings=list(reader.warnings),
            )
        )
    return runs
