"""Write a run directory: :class:`RunWriter`, append-only and crash-safe (the layout is in
:mod:`entangle.runs.directory`; the records in docs/records.md).

A resume (``RunWriter(path, resume=True)``) repairs what a killed writer left: it removes its
temporary files, drops a torn last line and records both in ``run.json``'s ``resumed_at``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np
import torch

from entangle.errors import EntangleRuntimeError, EntangleTypeError, EntangleValueError
from entangle.runs.io import (
    _TMP_SUFFIX,
    atomic_json,
    atomic_write,
    drop_torn_tail,
    make_dir,
    open_append,
    refuse_symlink,
    remove_file,
    write_error,
)
from entangle.runs.lock import RunLock
from entangle.runs.reader import SCHEMA_VERSION, RunReader
from entangle.runs.values import as_array, check_weights_only, dumps_record, to_jsonable

_OWNED = ("steps.jsonl", "epochs.jsonl", "features", "checkpoints", "DONE", "STOPPED")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git_sha() -> str | None:
    """HEAD of the git repository around the working directory, or None (never raises)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{7,64}", sha) else None


def _versions() -> dict:
    from entangle import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "entangle": __version__,
    }


class RunWriter:
    """Write one run directory; append-only and safe against a kill at any point.

    Args:
        path: the run directory (created with its parents).
        config: the run's configuration, stored in ``run.json`` (dict or dataclass).
        seed: the random seed.
        device: the device the run uses, e.g. ``"cuda:0"``.
        name: a display name (defaults to the directory name when read).
        resume: reopen an existing, unfinished run and append to it. Without it an existing
            run is never touched.

    Example:
        >>> with RunWriter(tmp / "run", config={"lr": 0.1}, seed=0) as run:  # doctest: +SKIP
        ...     run.write_step({"step": 0, "cos": -0.2})
        ...     run.finish({"acc_all": 0.61})
    """

    def __init__(
        self,
        path,
        *,
        config: dict | None = None,
        seed: int | None = None,
        device: str | None = None,
        name: str | None = None,
        resume: bool = False,
    ):
        self.path = Path(path)
        self._finished = False
        self._closed = False
        make_dir(self.path)  # never a symlink: everything below is written through it
        # the lock comes first: two writers must never both see "no run.json yet"
        self._lock = RunLock(self.path).acquire()
        try:
            self._open(config, seed, device, name, resume)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, config, seed, device, name, resume) -> None:
        meta_path = self.path / "run.json"
        refuse_symlink(meta_path)  # before anything in the folder is touched
        if meta_path.exists():
            if not resume:
                raise EntangleValueError(
                    f"{self.path} already holds a run (run.json exists) and runs are never "
                    "overwritten; choose another run directory (in Python, "
                    "RunWriter(path, resume=True) appends to an unfinished run)"
                )
            self._reopen(meta_path)
        else:
            taken = [n for n in _OWNED if os.path.lexists(self.path / n)]
            if taken:
                raise EntangleValueError(
                    f"{self.path} has no run.json but already contains {', '.join(taken)}; "
                    "refusing to mix runs: choose an empty or new directory"
                )
            self.meta = {
                "schema": SCHEMA_VERSION,
                "name": name,
                "config": config,
                "seed": seed,
                "versions": _versions(),
                "git_sha": _git_sha(),
                "device": None if device is None else str(device),
                "start_time": _now(),
                "host": socket.gethostname(),
            }
            if self._lock.taken_over:
                self.meta["lock_taken_over"] = self._lock.taken_over
            atomic_json(meta_path, self.meta)
        make_dir(self.path / "features", parents=False)
        make_dir(self.path / "checkpoints", parents=False)
        self._files = {}
        try:
            for fname in ("steps.jsonl", "epochs.jsonl"):
                self._files[fname] = open_append(self.path / fname)
        except BaseException:
            for fh in self._files.values():
                fh.close()
            raise

    def _reopen(self, meta_path: Path) -> None:
        if (self.path / "DONE").exists():
            raise EntangleValueError(
                f"{self.path} is a finished run (DONE exists); resuming would append after its "
                "end: start a new run directory instead"
            )
        self.meta = RunReader(self.path).meta
        entry = {"time": _now()}
        if self._lock.taken_over:
            entry["took_over_lock_of"] = self._lock.taken_over
        # half-written files of the killed writer: nobody else writes here (we hold the lock)
        # (lstat: a symlink named *.tmp is not a temporary file of ours and stays)
        removed = [
            str(p.relative_to(self.path))
            for folder in (self.path, self.path / "features", self.path / "checkpoints")
            if folder.is_dir() and not folder.is_symlink()
            for p in sorted(folder.iterdir())
            if p.name.endswith(_TMP_SUFFIX) and stat.S_ISREG(os.lstat(p).st_mode)
        ]
        for rel in removed:
            remove_file(self.path / rel)
        if removed:
            entry["removed_tmp"] = removed
        stopped = self.path / "STOPPED"
        refuse_symlink(stopped)  # its content goes into run.json
        if stopped.is_file():  # resuming a stopped run: keep why it stopped, in run.json
            try:
                entry["was_stopped"] = json.loads(stopped.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                entry["was_stopped"] = {"reason": "unreadable STOPPED file"}
            remove_file(stopped)
        for fname in ("steps.jsonl", "epochs.jsonl"):
            dropped = drop_torn_tail(self.path / fname)
            if dropped:
                # appending after a torn fragment would glue two records into one bad line
                entry.setdefault("dropped_torn_bytes", {})[fname] = dropped
        self.meta.setdefault("resumed_at", []).append(entry)
        atomic_json(meta_path, self.meta)

    def write_meta(self, key: str, value) -> None:
        """Add a top-level entry to ``run.json`` (e.g. the resolved calibration); never replaces."""
        self._check_open()
        if key in self.meta or key in ("schema", "config"):
            raise EntangleValueError(f"run.json already has {key!r}; entries are never replaced")
        self.meta[key] = to_jsonable(value, f"run.json {key}")
        atomic_json(self.path / "run.json", self.meta)

    def _check_open(self) -> None:
        if self._closed:
            state = "finished" if self._finished else "closed"
            raise EntangleRuntimeError(f"RunWriter for {self.path} is {state}; open a new one")

    def _append(self, fname: str, record: dict) -> None:
        self._check_open()
        if not isinstance(record, dict):
            raise EntangleTypeError(
                f"{fname}: a record must be a dict, got {type(record).__name__}"
            )
        # one write per record, so a kill leaves at most one torn last line
        fh = self._files[fname]
        try:
            fh.write((dumps_record(record) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:  # a torn line is cut on resume
            raise write_error(self.path / fname, exc) from None

    def write_step(self, record: dict) -> None:
        """Append one probed step's record to ``steps.jsonl`` (NaN/inf are stored as null)."""
        self._append("steps.jsonl", record)

    def write_epoch(self, record: dict) -> None:
        """Append one evaluation's record to ``epochs.jsonl`` (NaN/inf are stored as null)."""
        self._append("epochs.jsonl", record)

    def save_features(
        self, epoch: int, *, features, labels, labeled, novel, logits=None, **extra_arrays
    ) -> Path:
        """Save one evaluation's per-sample arrays to ``features/epoch_{epoch:03d}.npz``.

        Args:
            epoch: non-negative epoch number.
            features: ``[n, D]`` features.
            labels: ``[n]`` integer ground-truth classes.
            labeled: ``[n]`` bool, True for labeled rows.
            novel: ``[n]`` bool, True for rows of novel classes.
            logits: optional ``[n, K]``.
            **extra_arrays: more arrays stored under their keyword (e.g. ``tsne=[n, 2]``).

        Returns:
            the path written. Saving the same epoch again (after a resume) replaces the file
            atomically.
        """
        self._check_open()
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise EntangleValueError(f"epoch must be a non-negative int, got {epoch!r}")
        arrays = {
            "features": as_array(features, "features"),
            "labels": as_array(labels, "labels").astype(np.int64),
            "labeled": as_array(labeled, "labeled").astype(bool),
            "novel": as_array(novel, "novel").astype(bool),
        }
        if logits is not None:
            arrays["logits"] = as_array(logits, "logits")
        want = {"features": 2, "labels": 1, "labeled": 1, "novel": 1, "logits": 2}
        for key, ndim in want.items():
            if key in arrays and arrays[key].ndim != ndim:
                raise EntangleValueError(
                    f"save_features: {key} must be {ndim}-D, got shape {arrays[key].shape}"
                )
        n = arrays["features"].shape[0]
        lengths = {k: a.shape[0] for k, a in arrays.items()}
        if any(m != n for m in lengths.values()):
            raise EntangleValueError(
                f"save_features: every array needs one row per sample, got lengths {lengths}"
            )
        for key, value in extra_arrays.items():
            arrays[key] = as_array(value, key)
        target = self.path / "features" / f"epoch_{int(epoch):03d}.npz"
        atomic_write(target, lambda fh: np.savez(fh, **arrays))
        return target

    def checkpoint_path(self, name: str) -> Path:
        """Path of checkpoint ``name`` under ``checkpoints/`` (``.pt`` added without a suffix)."""
        if not name or Path(name).name != name or name in (".", ".."):
            raise EntangleValueError(
                f"checkpoint name must be a plain file name like 'epoch_010', got {name!r}"
            )
        if not name.endswith((".pt", ".pth")):
            name += ".pt"
        return self.path / "checkpoints" / name

    def save_checkpoint(self, name: str, state: dict) -> Path:
        """Save a dict of tensors and plain values atomically; it loads with weights_only=True.

        Args:
            name: file name under ``checkpoints/``, see :meth:`checkpoint_path`.
            state: e.g. ``{"model": model.state_dict(), "epoch": 3}``.

        Returns:
            the path written.
        """
        self._check_open()
        if not isinstance(state, dict):
            raise EntangleTypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
        check_weights_only(state, "state")
        target = self.checkpoint_path(name)
        atomic_write(target, lambda fh: torch.save(state, fh))
        return target

    def stop(self, reason: str, **details) -> None:
        """Mark the run stopped on purpose (e.g. training diverged): ``STOPPED`` holds
        ``{"time", "reason", **details}``; the run stays incomplete (no DONE)."""
        self._check_open()
        atomic_json(self.path / "STOPPED", {"time": _now(), "reason": reason, **details})

    def finish(self, summary: dict | None = None) -> None:
        """Close the record files and write ``DONE`` with ``summary``; the run is then complete.

        Allowed after :meth:`close` (e.g. after a ``with`` block), but only once.
        """
        if self._finished:
            raise EntangleRuntimeError(f"the run in {self.path} is already finished (DONE exists)")
        self._close_files()
        self._finished = True
        try:
            atomic_json(self.path / "DONE", {"end_time": _now(), "summary": summary or {}})
        finally:
            self._lock.release()

    def _close_files(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fh in self._files.values():
            fh.close()

    def close(self) -> None:
        """Close the record files and release the run's lock (idempotent). Does not mark the
        run complete."""
        self._close_files()
        self._lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
