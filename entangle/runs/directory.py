"""The run directory: an append-only, crash-safe writer and a tolerant reader (docs/records.md).

Layout::

    RUN/
      run.json        {"schema", "name", "config", "seed", "versions", "git_sha", "device",
                       "start_time", "host"} (+ "resumed_at": [{"time", ...}] per resume)
      steps.jsonl     one JSON object per probed step
      epochs.jsonl    one JSON object per evaluation
      features/       epoch_NNN.npz: features, labels, labeled, novel[, logits, extras]
      checkpoints/    state dicts, loadable with torch.load(weights_only=True)
      DONE            {"end_time", "summary"}, written last; absent = incomplete run
      STOPPED         {"time", "reason", ...}: stopped on purpose (diverged); removed on resume
      .writer.lock    the PID of the one process writing the run (entangle.runs.lock)

JSON lines are standard JSON: NaN and +-inf are written as ``null`` (JSON has no NaN), so a
reader sees ``None`` where a metric was NaN; :meth:`RunReader.column` turns them back into
NaN. Each record is written with one ``write`` and then flushed and fsynced, so a killed
process loses at most the record it was writing, which the reader reports as a torn last line.

Only one process may write a run (under DDP, rank 0): :class:`RunWriter` holds
``RUN/.writer.lock`` (:mod:`entangle.runs.lock`) while open, and a second writer is refused.

The writer is :mod:`entangle.runs.writer`, the reader :mod:`entangle.runs.reader`; this module
keeps the layout and the names old imports use.
"""

from entangle.runs.reader import SCHEMA_VERSION, RunReader
from entangle.runs.values import read_jsonl, to_jsonable
from entangle.runs.writer import RunWriter

# to_jsonable and read_jsonl live in entangle.runs.values; re-exported so old imports keep working
__all__ = ["SCHEMA_VERSION", "RunReader", "RunWriter", "read_jsonl", "to_jsonable"]
