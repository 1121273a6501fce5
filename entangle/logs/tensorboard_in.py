"""Read every scalar of TensorBoard event files (GCD, SelEx, LegoGCD write them).

Needs the ``tensorboard`` package (the ``[tb]`` extra), imported only here, inside the
functions. ``SummaryWriter.add_scalars(main, {"Old": .., "New": .., "All": ..})`` (the original
GCD code's accuracy logging) writes one sub-folder per key, ``<main>_Old`` and so on, each
holding the tag ``main``; such a series is named ``main/Old`` here, as TensorBoard shows it.
See docs/logs.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from entangle.errors import EntangleValueError

EVENT_FILE_MARK = "tfevents"


@dataclass
class ScalarLog:
    """Every scalar series of a set of event files.

    Attributes:
        paths: the event files read.
        series: name -> list of ``(step, wall_time, value)`` in file order.
        skipped: tag -> count of non-scalar values (histograms, images, text, tensors with
            more than one element), reported instead of dropped silently.
        events: number of events read.
    """

    paths: list[str] = field(default_factory=list)
    series: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    events: int = 0


def is_event_file(path) -> bool:
    """True for a TensorBoard event file name (``events.out.tfevents.*``)."""
    return EVENT_FILE_MARK in Path(path).name


def _tensorboard():
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        raise EntangleValueError(
            "reading TensorBoard event files needs the tensorboard package: "
            "pip install 'entangle-gcd[tb]'"
        ) from None
    return EventFileLoader, tensor_util


def series_name(tag: str, folder: str) -> str:
    """The series name of ``tag`` found in sub-folder ``folder`` of the log directory.

    ``add_scalars("acc", {"Old": x})`` stores tag ``acc`` in folder ``acc_Old``: ``acc/Old``.
    """
    if not folder or folder == ".":
        return tag
    leaf = Path(folder).name
    stem = tag.replace("/", "_") + "_"
    if leaf.startswith(stem) and len(leaf) > len(stem):
        parent = str(Path(folder).parent)
        name = f"{tag}/{leaf[len(stem) :]}"
        return name if parent == "." else f"{parent}/{name}"
    return f"{folder}/{tag}"


def _scalar(value, tensor_util) -> float | None:
    """The float of a summary value holding one number, else None."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1 and array.dtype.kind in "fiub":
            return float(array.reshape(()))
    return None


def _load(path, loader_cls) -> list:
    try:
        return list(loader_cls(str(path)).Load())
    except Exception as exc:  # a corrupt record: say which file, not a protobuf trace
        raise EntangleValueError(f"{path}: not a readable TensorBoard event file ({exc})") from None


def _scalar_tags(events) -> set[str]:
    return {v.tag for e in events if e.HasField("summary") for v in e.summary.value}


def is_add_scalars_folder(folder, tags) -> bool:
    """True when ``folder`` is a sub-folder ``add_scalars(main, {key: ..})`` wrote.

    Such a folder is named ``<main with / as _>_<key>`` and its files hold the tag ``main``
    only (torch.utils.tensorboard ``SummaryWriter.add_scalars``).
    """
    leaf = Path(folder).name
    return len(tags) == 1 and series_name(next(iter(tags)), leaf) != f"{leaf}/{next(iter(tags))}"


def read_event_files(paths, root=None) -> ScalarLog:
    """Read every scalar value of the given event files.

    The same run comes out whether the log directory, its ``add_scalars`` sub-folders or
    the event files one by one are given: a file inside an ``add_scalars`` sub-folder belongs
    to the folder above it (see :func:`is_add_scalars_folder`), and series are named relative
    to ``root``, by default the deepest folder holding every file's run folder.

    Args:
        paths: ``events.out.tfevents.*`` files.
        root: the log directory; a file's sub-folder under it names its series (see
            :func:`series_name`).

    Returns:
        a :class:`ScalarLog`.
    """
    loader_cls, tensor_util = _tensorboard()
    log = ScalarLog()
    loaded = []
    for path in sorted(Path(p).resolve() for p in paths):
        events = _load(path, loader_cls)
        child = is_add_scalars_folder(path.parent, _scalar_tags(events))
        loaded.append((path, events, path.parent.parent if child else path.parent))
    if root is None and loaded:
        root = Path(os.path.commonpath([str(run) for _, _, run in loaded]))
    for path, events, _ in loaded:
        folder = str(path.parent.relative_to(Path(root).resolve()))
        log.paths.append(str(path))
        for event in events:
            log.events += 1
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = _scalar(value, tensor_util)
                if number is None:
                    log.skipped[value.tag] = log.skipped.get(value.tag, 0) + 1
                    continue
                name = series_name(value.tag, folder)
                log.series.setdefault(name, []).append(
                    (int(event.step), float(event.wall_time), number)
                )
    for points in log.series.values():
        points.sort(key=lambda p: (p[0], p[1]))
    return log


def find_event_files(folder) -> list[Path]:
    """Event files anywhere under ``folder`` (add_scalars writes them into sub-folders)."""
    return sorted(p for p in Path(folder).rglob(f"*{EVENT_FILE_MARK}*") if p.is_file())
