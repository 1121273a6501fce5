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
from entangle.logs.attach import attach_records, logged_accuracy_note, read_attached
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
    kind: str  # "text", "tensorboard" or "text+tensorboard"
    epochs: int
    steps: int
    unknown_lines: int = 0
    notes: list[str] = field(default_factory=list)
    attached: list[tuple[Path, int]] = field(default_factory=list)  # (analysis run, epoch)


def _expand(files: Sequence) -> tuple[list[Path], list[Path]]:
    """Split the arguments into text logs and event files; folders are searched."""
    texts, events = [], []
    for item in files:
        path = Path(item)
        if path.is_dir():
            found = find_event_files(path)
            logs = sorted(p for name in TEXT_LOG_NAMES for p in path.rglob(name))
            if not found and not logs:
                raise EntangleValueError(
                    f"{path} holds no log.txt and no TensorBoard event file "
                    "(events.out.tfevents.*); pass the log files themselves"
                )
            events += found
            texts += logs
        elif not path.is_file():
            raise EntangleValueError(f"log file {path} does not exist")
        elif is_event_file(path):
            events.append(path)
        else:
            texts.append(path)
    if not texts and not events:
        raise EntangleValueError("import-log: no log files given")
    unique = lambda paths: sorted({p.resolve() for p in paths})  # noqa: E731
    return unique(texts), unique(events)


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


# an accuracy both sources hold must agree to the 4 decimals the text log prints
AGREE_TOL = 5e-5


def _epoch_axis(points, epochs: set[int]) -> bool:
    """True when a TensorBoard series was logged per epoch (see :func:`combine_records`)."""
    return bool(points) and all(step in epochs for step, _, _ in points)


def combine_records(
    epochs: list[dict], steps: list[dict], log: ScalarLog
) -> tuple[list[dict], list[dict], list[str]]:
    """The text log's records with every TensorBoard scalar of the same run beside them.

    The rule (docs/logs.md, "A whole output folder"):

    - a series whose every step is an epoch the text log names was written per epoch (the
      GCD family passes the epoch to ``add_scalar`` / ``add_scalars``): its values go into
      that epoch's record, under ``scalars``; any other series is on the global-step axis
      of the step records (``step = epoch x batches + batch``), under ``scalars`` of the step
      record of that step (a new record where the text log has none);
    - an evaluation (``Train ACC Unlabelled_<protocol>/All|Old|New``) comes from the text
      log where it has one; TensorBoard's numbers must agree to 4 decimals
      (:data:`AGREE_TOL`), else a note names every epoch that differs. An evaluation only
      TensorBoard holds is taken from it (``acc_source: "tensorboard"``).

    Returns:
        ``(epoch records, step records, notes)``.
    """
    by_epoch = {rec["epoch"]: rec for rec in epochs}
    by_step = {rec["step"]: rec for rec in steps}
    per_epoch = ScalarLog(series={})
    for name, points in log.series.items():
        if _epoch_axis(points, set(by_epoch)):
            per_epoch.series[name] = points
            continue
        for step, _, value in points:
            by_step.setdefault(step, {"step": step}).setdefault("scalars", {})[name] = value
    tb_epochs, _ = tensorboard_records(per_epoch)
    tb_by_epoch = {rec["epoch"]: rec for rec in tb_epochs}
    for name, points in per_epoch.series.items():
        for step, _, value in points:
            by_epoch[step].setdefault("scalars", {})[name] = value
    differ, checked = [], 0
    for epoch, tb in tb_by_epoch.items():
        rec = by_epoch[epoch]
        if "acc_all" not in tb:
            continue
        if "acc_all" not in rec:
            rec.update({k: tb[k] for k in ("logged_acc",) if k in tb})
            rec.update({k: tb[k] for k in (*_SUMMARY_KEYS, "acc_protocols") if k in tb})
            rec["acc_source"] = "tensorboard"
            continue
        rec["acc_source"] = "text"
        if "logged_acc" in tb:
            rec.setdefault("logged_acc", tb["logged_acc"])
        shown = rec.get("acc_protocol")
        text_accs = rec.get("acc_protocols", {})
        for protocol, accs in tb["acc_protocols"].items():
            want = text_accs.get(protocol) or (
                {k: rec[f"acc_{k}"] for k in ("all", "old", "new")} if protocol == shown else None
            )
            if want is None:
                text_accs[protocol] = accs
                continue
            checked += 1
            if any(abs(want[k] - accs[k]) > AGREE_TOL for k in ("all", "old", "new")):
                differ.append(f"epoch {epoch} {protocol}")
        if text_accs:
            rec["acc_protocols"] = text_accs
    notes = []
    if differ:
        notes.append(
            f"text log and TensorBoard disagree (> {AGREE_TOL:g}) on {len(differ)} of "
            f"{checked} evaluations ({', '.join(differ[:5])}); the text log's are kept"
        )
    merged_steps = [by_step[s] for s in sorted(by_step)]
    return [by_epoch[e] for e in sorted(by_epoch)], merged_steps, notes


def _text_config(logs: list[TextLog]) -> dict:
    return {
        "parse": [
            {"file": log.path, **log.counts, "unknown_examples": log.unknown_examples}
            for log in logs
        ],
        "printed_protocol": next((g.printed_protocol for g in logs if g.printed_protocol), None),
        "best": [b for log in logs for b in log.best],
        "reference": {
            "epochs": [r for log in logs for r in log.reference_epochs],
            "steps": [r for log in logs for r in log.reference_steps],
        },
    }


def _tensorboard_config(scalars: ScalarLog) -> dict:
    return {
        "events": scalars.events,
        "series": {k: len(v) for k, v in sorted(scalars.series.items())},
        "skipped": scalars.skipped,
    }


def import_log(
    files: Sequence, out, *, name: str | None = None, attach: Sequence = ()
) -> ImportResult:
    """Write the run directory ``out`` from text logs and/or TensorBoard event files.

    Args:
        files: ``log.txt`` files (loguru / logging / captured stdout of the SimGCD family and
            the original GCD code), TensorBoard event files, or folders holding them (a
            run's whole output folder: ``log.txt`` beside its event files and ``add_scalars``
            sub-folders). The folder, its sub-folders or its files one by one give the same
            run.
        out: the run directory to create (an existing run is never overwritten).
        name: display name of the run in reports (default: the folder name of ``out``).
        attach: ``entangle analyze`` runs of the folder's checkpoints; each one's features
            and diagnostics join the evaluation of its checkpoint's epoch
            (:mod:`entangle.logs.attach`).

    Returns:
        an :class:`ImportResult`; its ``notes`` list the unknown lines and skipped values.

    Raises:
        EntangleValueError: missing files, nothing readable.
    """
    texts, events = _expand(files)
    notes: list[str] = []
    epochs, steps, unknown = [], [], 0
    config: dict = {"source": "import-log"}
    if texts:
        logs = [read_text_log(p) for p in texts]
        epochs, steps, notes = _merge_text(logs)
        unknown = sum(log.counts["unknown"] for log in logs)
        config.update(_text_config(logs))
    if events:
        epochs, steps, more = _read_events(events, epochs, steps, config, with_text=bool(texts))
        notes += more
    epochs, attached, more = _attach_all(attach, epochs, config)
    notes += more
    kind = "+".join(k for k, on in (("text", texts), ("tensorboard", events)) if on)
    config["kind"] = kind
    config["files"] = [str(p) for p in (*texts, *events)]
    _write_run(out, config, name, epochs, steps, attached, unknown)
    placed = [(a.path, a.epoch) for a in attached]
    return ImportResult(Path(out), kind, len(epochs), len(steps), unknown, notes, placed)


def _read_events(
    events: list[Path], epochs: list, steps: list, config: dict, *, with_text: bool
) -> tuple[list[dict], list[dict], list[str]]:
    """The records with the event files' scalars joined (or alone); ``config`` gains their parse.

    Beside a text log the scalars are combined with its records (the text log's kept where
    they disagree); alone they are the records.
    """
    scalars = read_event_files(events)
    notes: list[str] = []
    if not scalars.series and not with_text:
        raise EntangleValueError(
            f"no scalar values in {len(events)} event file(s) "
            f"({', '.join(str(p) for p in events[:3])}); nothing to import"
        )
    if with_text:
        epochs, steps, notes = combine_records(epochs, steps, scalars)
        config["tensorboard"] = _tensorboard_config(scalars)
    else:
        epochs, steps = tensorboard_records(scalars)
        config["parse"] = _tensorboard_config(scalars)
    if scalars.skipped:
        notes.append(
            "non-scalar values not imported: "
            + ", ".join(f"{t} ({n})" for t, n in sorted(scalars.skipped.items()))
        )
    return epochs, steps, notes


def _attach_all(attach: Sequence, epochs: list[dict], config: dict):
    """``epochs`` with each analysis run of ``attach`` joined; the runs read and their notes.

    ``config`` gains where each came from and the first one's class names and aperture.
    """
    # lazy: start-up time: importing a text log needs no torch (runs.directory imports it)
    from entangle.runs.directory import RunReader

    attached, notes = [], []
    for path in attach:
        one = read_attached(path, [rec["epoch"] for rec in epochs])
        epochs = attach_records(epochs, one)
        notes += one.notes
        compared = logged_accuracy_note(epochs, one)
        notes += [compared] if compared else []
        attached.append(one)
    if attached:
        config["attached"] = [{"analysis": str(a.path), "epoch": a.epoch} for a in attached]
        # the report's legends and energy read these; the analysis knew the data's classes
        first = RunReader(attached[0].path).config or {}
        config.update({k: first[k] for k in ("class_names", "aperture") if k in first})
    return epochs, attached, notes


def _write_run(out, config: dict, name, epochs, steps, attached, unknown: int) -> None:
    """The run directory ``out``: the records, the attached features and the DONE summary."""
    # lazy: start-up time: importing a text log needs no torch (runs.directory imports it)
    from entangle.runs.directory import RunWriter

    with RunWriter(out, config=config, name=name) as run:
        for rec in epochs:
            run.write_epoch(rec)
        for rec in steps:
            run.write_step(rec)
        for one in attached:
            if one.features is not None:
                run.save_features(one.epoch, **one.features)
        last = next((rec for rec in reversed(epochs) if "acc_all" in rec), {})
        run.finish(
            {
                "imported": config["kind"],
                "epochs": len(epochs),
                "steps": len(steps),
                "unknown_lines": unknown,
                **{k: last[k] for k in _SUMMARY_KEYS if k in last},
            }
        )
