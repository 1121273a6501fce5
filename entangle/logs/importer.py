"""``import_log``: turn an existing run's text log or TensorBoard files into a run directory.

The run directory is the one probes write (``entangle report`` draws it beside probed runs):
``epochs.jsonl`` holds one record per logged evaluation (accuracy under the protocol the log
names, the epoch's average loss), ``steps.jsonl`` one record per logged training step (the
loss components) or per TensorBoard step (every scalar). ``run.json`` says where the numbers
came from and how many lines were not understood. See docs/logs.md and docs/records.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.logs.tensorboard_in import (
    ScalarLog,
    find_event_files,
    is_event_file,
    read_event_files,
)
from entangle.logs.text import SAVE_NAME_UNLABELLED, TextLog, read_text_log

TEXT_LOG_NAMES = ("log.txt",)
_TB_ACCURACY = re.compile(r"^(?P<save>.+)_(?P<protocol>[A-Za-z0-9]+)/(?P<part>All|Old|New)$")
# the protocol a TensorBoard run's acc_* fields show when it logged several
_PREFERRED = ("v2", "v2b", "v1")
_SUMMARY_KEYS = ("acc_all", "acc_old", "acc_new", "acc_protocol")


@dataclass
class ImportResult:
    """What :func:`import_log` wrote and what it could not read."""

    run_dir: Path
    kind: str  # "text" or "tensorboard"
    epochs: int
    steps: int
    unknown_lines: int = 0
    notes: list[str] = field(default_factory=list)


def _expand(files: Sequence) -> tuple[list[Path], list[Path], Path | None]:
    """Split the arguments into text logs and event files; folders are searched."""
    texts, events, root = [], [], None
    for item in files:
        path = Path(item)
        if path.is_dir():
            found = find_event_files(path)
            if found:
                events += found
                root = root or path
            texts += sorted(p for name in TEXT_LOG_NAMES for p in path.rglob(name))
            if not found and not any(p.is_relative_to(path) for p in texts):
                raise EntangleValueError(
                    f"{path} holds no log.txt and no TensorBoard event file "
                    "(events.out.tfevents.*); pass the log files themselves"
                )
        elif not path.is_file():
            raise EntangleValueError(f"log file {path} does not exist")
        elif is_event_file(path):
            events.append(path)
        else:
            texts.append(path)
    if texts and events:
        raise EntangleValueError(
            f"got text logs ({', '.join(p.name for p in texts[:3])}) and TensorBoard event "
            "files together; their step axes differ, so import each kind into its own run "
            "(two import-log calls with different --out)"
        )
    if not texts and not events:
        raise EntangleValueError("import-log: no log files given")
    return texts, events, root


def _merge_text(logs: list[TextLog]) -> tuple[list[dict], list[dict], list[str]]:
    epochs: dict[int, dict] = {}
    steps: list[dict] = []
    notes: list[str] = []
    for log in logs:
        for rec in log.epoch_records():
            if rec["epoch"] in epochs:
                notes.append(f"epoch {rec['epoch']} appears again in {log.path}; the later is kept")
            epochs[rec["epoch"]] = rec
        for s in log.steps:
            steps.append({"step": s["epoch"] * s["batches"] + s["batch"]} | s)
        if log.counts["unknown"]:
            shown = "; ".join(f"line {n}: {t!r}" for n, t in log.unknown_examples)
            notes.append(f"{log.path}: {log.counts['unknown']} unknown lines (first: {shown})")
    return [epochs[e] for e in sorted(epochs)], steps, notes


def tensorboard_records(log: ScalarLog) -> tuple[list[dict], list[dict]]:
    """``(epoch records, step records)`` of a :class:`ScalarLog`.

    Every series goes into the step records as ``scalars`` (keyed by TensorBoard step).
    Series named ``Train ACC Unlabelled_<protocol>/All|Old|New`` (the original GCD code's
    ``add_scalars``, with the epoch as step) also make epoch records; other accuracy series of
    that shape (``Test ACC_v1/Old``) go to their ``logged_acc``.
    """
    by_step: dict[int, dict] = {}
    for name, points in log.series.items():
        for step, _, value in points:
            by_step.setdefault(step, {"step": step, "scalars": {}})["scalars"][name] = value
    accs: dict[int, dict] = {}
    for name, points in log.series.items():
        m = _TB_ACCURACY.match(name)
        if not m:
            continue
        for step, _, value in points:
            per_save = accs.setdefault(step, {}).setdefault(m.group("save"), {})
            per_save.setdefault(m.group("protocol"), {})[m.group("part").lower()] = value
    epochs = []
    for step in sorted(accs):
        rec: dict = {"epoch": step}
        logged = accs[step]
        unlabelled = {p: a for p, a in logged.pop(SAVE_NAME_UNLABELLED, {}).items() if len(a) == 3}
        if unlabelled:
            first = next((p for p in _PREFERRED if p in unlabelled), sorted(unlabelled)[0])
            rec.update({f"acc_{k}": unlabelled[first][k] for k in ("all", "old", "new")})
            rec["acc_protocol"] = first
            rec["acc_protocols"] = {p: unlabelled[p] for p in sorted(unlabelled)}
        if logged:
            rec["logged_acc"] = logged
        epochs.append(rec)
    return epochs, [by_step[s] for s in sorted(by_step)]


def import_log(files: Sequence, out, *, name: str | None = None) -> ImportResult:
    """Write the run directory ``out`` from text logs or TensorBoard event files.

    Args:
        files: ``log.txt`` files (loguru / logging / captured stdout of the SimGCD family and
            the original GCD code), TensorBoard event files, or folders holding them.
        out: the run directory to create (an existing run is never overwritten).
        name: display name of the run in reports (default: the folder name of ``out``).

    Returns:
        an :class:`ImportResult`; its ``notes`` list the unknown lines and skipped values.

    Raises:
        EntangleValueError: missing files, text and event files mixed, nothing readable.
    """
    from entangle.runs.directory import RunWriter

    texts, events, root = _expand(files)
    notes: list[str] = []
    if texts:
        logs = [read_text_log(p) for p in texts]
        epochs, steps, notes = _merge_text(logs)
        kind, unknown = "text", sum(log.counts["unknown"] for log in logs)
        config = {
            "source": "import-log",
            "kind": kind,
            "files": [str(Path(p).resolve()) for p in texts],
            "parse": [
                {"file": log.path, **log.counts, "unknown_examples": log.unknown_examples}
                for log in logs
            ],
            "printed_protocol": next(
                (g.printed_protocol for g in logs if g.printed_protocol), None
            ),
            "best": [b for log in logs for b in log.best],
            "reference": {
                "epochs": [r for log in logs for r in log.reference_epochs],
                "steps": [r for log in logs for r in log.reference_steps],
            },
        }
    else:
        scalars = read_event_files(events, root)
        if not scalars.series:
            raise EntangleValueError(
                f"no scalar values in {len(events)} event file(s) "
                f"({', '.join(str(p) for p in events[:3])}); nothing to import"
            )
        epochs, steps = tensorboard_records(scalars)
        kind, unknown = "tensorboard", 0
        if scalars.skipped:
            notes.append(
                "non-scalar values not imported: "
                + ", ".join(f"{t} ({n})" for t, n in sorted(scalars.skipped.items()))
            )
        config = {
            "source": "import-log",
            "kind": kind,
            "files": [str(Path(p).resolve()) for p in scalars.paths],
            "parse": {
                "events": scalars.events,
                "series": {k: len(v) for k, v in sorted(scalars.series.items())},
                "skipped": scalars.skipped,
            },
        }
    with RunWriter(out, config=config, name=name) as run:
        for rec in epochs:
            run.write_epoch(rec)
        for rec in steps:
            run.write_step(rec)
        last = epochs[-1] if epochs else {}
        run.finish(
            {
                "imported": kind,
                "epochs": len(epochs),
                "steps": len(steps),
                "unknown_lines": unknown,
                **{
                    k: last[k]
                    for k in ("acc_all", "acc_old", "acc_new", "acc_protocol")
                    if k in last
                },
            }
        )
    return ImportResult(Path(out), kind, len(epochs), len(steps), unknown, notes)
