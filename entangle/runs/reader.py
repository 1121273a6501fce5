"""Read a run directory: :class:`RunReader`, tolerant of a torn last line, a resume's
superseded records and a missing DONE; strict about ``run.json``'s fields (the layout is in
:mod:`entangle.runs.directory`; the records in docs/records.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from entangle.errors import EntangleValueError
from entangle.runs.io import _TMP_SUFFIX
from entangle.runs.untrusted import load_npz
from entangle.runs.values import read_jsonl, readable

SCHEMA_VERSION = 1

_FEATURE_FILE = re.compile(r"^epoch_(\d+)\.npz$")


class RunReader:
    """Read a run directory written by :class:`~entangle.runs.writer.RunWriter`, complete or not.

    Args:
        path: the run directory.

    Attributes:
        meta: the ``run.json`` dict; ``steps`` / ``epochs``: lists of record dicts (NaN was
        stored as None); ``warnings``: strings describing torn lines and a missing DONE.
    """

    def __init__(self, path):
        self.path = Path(path)
        meta_path = self.path / "run.json"
        if not meta_path.is_file():
            raise EntangleValueError(
                f"not a run directory: {self.path}; expected run.json written by entangle"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EntangleValueError(f"{meta_path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise EntangleValueError(f"{meta_path}: expected a JSON object")
        major = _schema_major(meta.get("schema"), meta_path)
        if major > SCHEMA_VERSION:
            raise EntangleValueError(
                f"{self.path} was written by a newer entangle (schema {meta['schema']}); "
                f"this entangle reads schema {SCHEMA_VERSION}: upgrade entangle"
            )
        if major < 1:
            raise EntangleValueError(
                f"{meta_path}: unknown schema {meta['schema']!r}; expected {SCHEMA_VERSION}"
            )
        _check_meta_fields(meta, meta_path)
        self.meta = meta
        self.steps, step_warnings = read_jsonl(self.path / "steps.jsonl")
        self.epochs, epoch_warnings = read_jsonl(self.path / "epochs.jsonl")
        self.warnings = step_warnings + epoch_warnings
        self.steps = _latest_per_key(
            self.steps, "step", str(self.path / "steps.jsonl"), self.warnings
        )
        self.epochs = _latest_per_key(
            self.epochs, "epoch", str(self.path / "epochs.jsonl"), self.warnings
        )
        self._done = None
        done_path = self.path / "DONE"
        if done_path.is_file():
            try:
                self._done = json.loads(done_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EntangleValueError(f"{done_path} is not valid JSON: {exc}") from exc
        elif (self.path / "STOPPED").is_file():
            try:
                why = json.loads((self.path / "STOPPED").read_text(encoding="utf-8"))["reason"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                why = "reason unreadable"
            self.warnings.append(f"run stopped before its end: {why}")
        else:
            self.warnings.append(
                "run is incomplete: no DONE file (still running, stopped or killed; rerun the "
                "command that wrote it, e.g. `entangle train RUN`, to resume it)"
            )

    @property
    def config(self) -> dict | None:
        return self.meta.get("config")

    @property
    def name(self) -> str:
        # a folder name under a non-UTF-8 locale holds lone surrogates (runs/values.readable)
        return readable(self.meta.get("name") or self.path.resolve().name)

    @property
    def complete(self) -> bool:
        """True when the run wrote DONE (finished normally)."""
        return self._done is not None

    @property
    def summary(self) -> dict | None:
        """The summary passed to :meth:`RunWriter.finish`, or None for an incomplete run."""
        return None if self._done is None else self._done.get("summary", {})

    @property
    def end_time(self) -> str | None:
        return None if self._done is None else self._done.get("end_time")

    def column(self, key: str, table: str = "steps") -> np.ndarray:
        """One value per record as float64, NaN where the value is null or missing.

        Args:
            key: record key; dots reach into nested dicts (``"raw.cos"``).
            table: ``"steps"`` or ``"epochs"``.

        Returns:
            ``[n_records]`` float64 array.
        """
        if table not in ("steps", "epochs"):
            raise EntangleValueError(f"table must be 'steps' or 'epochs', got {table!r}")
        out = []
        for record in getattr(self, table):
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            out.append(np.nan if value is None or isinstance(value, (dict, list, str)) else value)
        return np.asarray(out, dtype=np.float64)

    def feature_epochs(self) -> list[int]:
        """Epochs with a saved ``features/epoch_NNN.npz``, ascending."""
        folder = self.path / "features"
        if not folder.is_dir():
            return []
        found = (_FEATURE_FILE.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def features(self, epoch: int | None = None) -> dict[str, np.ndarray]:
        """The arrays saved for ``epoch`` (the latest when None), loaded into memory."""
        epochs = self.feature_epochs()
        if not epochs:
            raise EntangleValueError(f"{self.path} has no saved features (features/epoch_*.npz)")
        if epoch is None:
            epoch = epochs[-1]
        if epoch not in epochs:
            raise EntangleValueError(
                f"{self.path} has no features for epoch {epoch}; saved epochs: {epochs}"
            )
        path = self.path / "features" / f"epoch_{epoch:03d}.npz"
        arrays = load_npz(path)
        missing = [k for k in ("features", "labels", "labeled", "novel") if k not in arrays]
        if missing:
            raise EntangleValueError(
                f"features file {path} lacks {', '.join(missing)}; it was not written by "
                "entangle: remove it, or rerun the command that wrote the run"
            )
        return arrays

    def checkpoints(self) -> list[Path]:
        """Checkpoint files under ``checkpoints/``, sorted by name."""
        folder = self.path / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.is_file() and not p.name.endswith(_TMP_SUFFIX)
        )


def _latest_per_key(records: list[dict], key: str, fname: str, warnings: list[str]) -> list[dict]:
    """Keep the last record of each ``key`` value, in order of that value.

    A run resumed from a checkpoint re-writes the steps after it; the records of the abandoned
    tail are superseded, not deleted (files are append-only).
    """
    if not records or any(key not in r for r in records):
        return records
    for i, r in enumerate(records, 1):
        value = r[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise EntangleValueError(
                f"{fname}: record {i} has {key} = {value!r}, not an integer; the file was "
                f"edited or damaged: fix or delete that line"
            )
    latest = {r[key]: r for r in records}
    if len(latest) == len(records):
        return records
    warnings.append(
        f"{fname}: {len(records) - len(latest)} records superseded by a resume (the later "
        f"record of each {key} is used)"
    )
    return [latest[k] for k in sorted(latest)]


def _schema_major(schema, meta_path: Path) -> int:
    try:
        return int(str(schema).split(".")[0])
    except ValueError:
        raise EntangleValueError(
            f"{meta_path}: missing or malformed 'schema' ({schema!r}); expected {SCHEMA_VERSION}"
        ) from None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_positive(value) -> bool:
    return _is_number(value) and value > 0


def _is_optional_number(value) -> bool:
    return value is None or _is_number(value)


# run.json's fields as RunWriter and the GCD recipe write them (docs/records.md), each with a
# test and the words for what it must be: readers (report, a resume) use them unchecked, so a
# damaged file fails here in one line instead of deep inside (config: [1] was an
# AttributeError; resumed_at: 5 and calibration: 5 too)
_META_FIELDS = {
    "name": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "config": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "seed": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "an integer or null",
    ),
    "versions": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "git_sha": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "device": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "start_time": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "host": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "resumed_at": (
        lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
        "a list of objects (one per resume)",
    ),
    "calibration": (
        lambda v: (
            isinstance(v, dict)
            and _is_positive(v.get("aperture"))
            and _is_optional_number(v.get("auto_aperture"))
        ),
        "an object with a positive number 'aperture' (and 'auto_aperture' a number or null)",
    ),
    "conceptor": (lambda v: isinstance(v, dict), "an object"),
    "lock_taken_over": (lambda v: isinstance(v, dict), "an object"),
}


def _check_meta_fields(meta: dict, meta_path: Path) -> None:
    """Refuse a run.json whose known fields have the wrong type, naming the first one."""
    for key, (ok, what) in _META_FIELDS.items():
        if key in meta and not ok(meta[key]):
            shown = repr(meta[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise EntangleValueError(
                f"{meta_path}: {key!r} must be {what}, got {shown}; the file was edited or "
                "damaged: restore it, or start a new run directory"
            )
