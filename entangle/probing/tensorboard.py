"""Probe and evaluation records as TensorBoard scalars and histograms, live or from a run.

Tags are the record's key paths joined by ``/`` (docs/records.md, "TensorBoard tags"), so they
are stable and say what they are: ``raw/last_block/cos``, ``eagc/last_block/gdc``,
``energy/eep_weight/q50``, ``probeset/soc``; evaluation records go under ``epoch/``
(``epoch/acc_all``, ``epoch/soc``); a step record's own top-level numbers (``n_labeled``,
``eagc_mu``) are grouped under ``step/``. Scalars are written at the record's ``step``. Non-finite
values (a NaN step, stored as null) are not written; steps.jsonl keeps their reasons.
The Probe's live sink (probing/sinks.py) writes through :class:`TensorBoardOut`;
``entangle export`` (logs/tensorboard_out.py) writes a finished run through the same class.

Needs the ``tensorboard`` package (the ``[tb]`` extra), imported inside the functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from entangle.errors import EntangleTypeError, EntangleValueError
from entangle.runs import keys
from entangle.runs.subsample import subsample_label, subsample_words

# top-level record keys that are the x axis, bookkeeping or a setting, not measured values
# (``k``: the SOC subspace dimension of an evaluation); epochs.jsonl keeps them
SKIPPED_KEYS = frozenset({keys.STEP, keys.EPOCH, keys.NAN, keys.TIME, keys.SOC_K_USED})
EPOCH_PREFIX = keys.EPOCH
HISTOGRAM_PREFIX = "hist"
# a step record's top-level numbers (n_labeled, eagc_mu): one TensorBoard section, not one each
SINGLETON_PREFIX = keys.STEP
# the applied update's series beside the raw one: EAGC's corrected gradients, the EAGC
# authors' weighting, a torchjd coordinator's (docs/records.md)
APPLIED_KINDS = (keys.EAGC, keys.EAGC_AUTHORS, keys.COORDINATED)
# the text summary of a subsampled attribution (the scalar tags stay the full set's)
SUBSAMPLE_TEXT_TAG = f"{keys.ATTRIBUTION}/{keys.ATTRIBUTION_SUBSAMPLE}"


def record_scalars(
    record: Mapping, prefix: str = "", *, _top: bool = True
) -> Iterator[tuple[str, float]]:
    """``(tag, value)`` for every finite number in a nested record (lists are skipped).

    Args:
        record: a step or epoch record (host values: floats, ints, bools, dicts, lists).
        prefix: prepended to every tag (``"epoch"`` for evaluation records).
    """
    for key, value in record.items():
        if _top and key in SKIPPED_KEYS:  # also under the epoch/ prefix: no epoch/epoch
            continue
        tag = f"{prefix}/{key}" if prefix else str(key)
        if _top and not prefix and not isinstance(value, Mapping):
            tag = f"{SINGLETON_PREFIX}/{key}"
        if isinstance(value, Mapping):
            yield from record_scalars(value, tag, _top=False)
        elif isinstance(value, bool):
            yield tag, float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            yield tag, float(value)


def class_attribution(record: Mapping, class_names=None) -> Iterator[tuple[str, float]]:
    """``(tag, value)`` of an attributed step's per-class shares, one series per class.

    ``attribution.unsup_rows.class`` (a ``[K]`` list, skipped by ``record_scalars``) becomes
    ``attribution/unsup_rows/class/<name>`` (the share sum as recorded) and
    ``attribution/unsup_rows/class_per_row/<name>`` (sum over the class's unlabeled rows,
    the report's ranking; classes without rows are left out); the same for
    ``attribution_eagc``. ``<name>``: the run's class name (``/`` as ``_``), else the index.

    Args:
        record: a step record.
        class_names: the run's ``config["class_names"]`` (None, or a list of another
            length: indices).
    """
    for kind in (keys.ATTRIBUTION, keys.ATTRIBUTION_EAGC):
        rows = (record.get(kind) or {}).get("unsup_rows") or {}
        sums, counts = rows.get("class"), rows.get("class_rows")
        if not isinstance(sums, list):
            continue
        named = isinstance(class_names, list) and len(class_names) == len(sums)
        for i, value in enumerate(sums):
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            name = str(class_names[i]).replace("/", "_") if named else str(i)
            yield f"{kind}/unsup_rows/class/{name}", float(value)
            n = counts[i] if isinstance(counts, list) and i < len(counts) else None
            if isinstance(n, int | float) and n > 0:
                yield f"{kind}/unsup_rows/class_per_row/{name}", float(value) / n


def summary_writer(log_dir):
    """A ``torch.utils.tensorboard.SummaryWriter`` for ``log_dir`` (needs the [tb] extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise EntangleValueError(
            "writing TensorBoard logs needs the tensorboard package: pip install 'entangle-gcd[tb]'"
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardOut:
    """Write step and epoch records to a SummaryWriter under stable tags.

    Args:
        writer: a ``SummaryWriter`` (left open on :meth:`close`, only flushed) or a log
            directory (a writer is opened there and closed by :meth:`close`).
        histogram_every: write the per-row histograms (EEP weights of unlabeled rows,
            energy ratios per row group) on every ``histogram_every``-th written step record.
        class_names: the run's class names, naming the per-class attribution series
            (:func:`class_attribution`); None: class indices.
    """

    def __init__(self, writer, *, histogram_every: int = 10, class_names=None) -> None:
        if int(histogram_every) < 1:
            raise EntangleValueError(
                f"histogram_every must be a positive integer, got {histogram_every}"
            )
        if isinstance(writer, str | Path):
            self.writer, self._own = summary_writer(writer), True
        elif callable(getattr(writer, "add_scalar", None)):
            self.writer, self._own = writer, False
        else:
            raise EntangleTypeError(
                "tensorboard= takes a torch.utils.tensorboard.SummaryWriter or a log directory, "
                f"got {type(writer).__name__}"
            )
        self.histogram_every = int(histogram_every)
        self.class_names = list(class_names) if class_names is not None else None
        self._steps_written = 0
        self._subsample: str | None = None  # the last subsample label written as text
        self.tags: set[str] = set()  # every scalar tag written, for the overlay layout
        self._closed = False

    def histogram_due(self) -> bool:
        """Whether the next step record gets histograms."""
        return self._steps_written % self.histogram_every == 0

    def write_step(self, record: Mapping, rows: Mapping | None = None) -> None:
        """Scalars of one probed step's record; histograms of ``rows`` when due.

        Args:
            record: the step record (as written to steps.jsonl).
            rows: per-row tensors of the step, ``{name: [n] tensor}`` plus an optional
                ``"labeled"`` ``[n]`` bool mask (see :func:`row_histograms`).
        """
        step = int(record.get(keys.STEP, self._steps_written))
        for tag, value in record_scalars(record):
            self.writer.add_scalar(tag, value, step)
            self.tags.add(tag)
        # the per-class lists record_scalars skips, one named series per class
        for tag, value in class_attribution(record, self.class_names):
            self.write_scalar(tag, value, step)
        self._write_subsample(record, step)
        if rows and self.histogram_due():
            for tag, values in row_histograms(rows):
                self.writer.add_histogram(tag, values, step)
        self._steps_written += 1

    def _write_subsample(self, record: Mapping, step: int) -> None:
        """A text summary at :data:`SUBSAMPLE_TEXT_TAG` when a subsampled attribution starts
        or its rows change: the ``attribution/...`` series then cover those rows only."""
        entry = (record.get(keys.ATTRIBUTION) or {}).get(keys.ATTRIBUTION_SUBSAMPLE)
        add_text = getattr(self.writer, "add_text", None)
        if not isinstance(entry, Mapping) or not callable(add_text):
            return
        label = subsample_label([entry])
        if label == self._subsample:
            return
        self._subsample = label
        words = subsample_words(label)
        add_text(
            SUBSAMPLE_TEXT_TAG,
            f"{words[0].upper()}{words[1:]}: every {keys.ATTRIBUTION}/ and "
            f"{keys.ATTRIBUTION_EAGC}/ sum, group and class series covers those rows only, so "
            "unsup_rows/sum is part of cos(g_S, g_U), not it (docs/attribution.md).",
            step,
        )

    def write_epoch(self, record: Mapping) -> None:
        """Scalars of one evaluation record under ``epoch/``, at its ``step`` (else its epoch)."""
        step = int(record.get(keys.STEP, record.get(keys.EPOCH, 0)))
        for tag, value in record_scalars(record, EPOCH_PREFIX):
            self.writer.add_scalar(tag, value, step)
            self.tags.add(tag)

    def write_scalar(self, tag: str, value: float, step: int) -> None:
        """One more scalar (a caller's own series), counted for the layout."""
        self.writer.add_scalar(tag, value, int(step))
        self.tags.add(tag)

    def layout(self) -> dict:
        """:func:`overlay_layout` of the tags written so far."""
        return overlay_layout(self.tags)

    def write_histogram(self, tag: str, values, step: int) -> None:
        """One histogram, skipped when ``values`` has no finite entry."""
        values = torch.as_tensor(values).detach().reshape(-1).double().cpu()
        values = values[torch.isfinite(values)]
        if values.numel():
            self.writer.add_histogram(tag, values, int(step))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Write the overlay layout and close, when this object opened the writer; else flush.

        A writer passed in gets no layout: TensorBoard shows one layout per run folder and
        the writer's owner may have written their own (``writer.add_custom_scalars(
        out.layout())`` adds entangle's). Idempotent.
        """
        if self._own and not self._closed:
            layout = self.layout()
            if layout:
                self.writer.add_custom_scalars(layout)
        self.writer.flush()
        if self._own:
            self.writer.close()
        self._closed = True


def row_histograms(rows: Mapping) -> Iterator[tuple[str, torch.Tensor]]:
    """``(tag, values)`` histograms of per-row tensors, split by ``rows["labeled"]``.

    ``eep_weight`` is shown over the unlabeled rows only (EEP never acts on labeled rows);
    every other entry (``energy_ratio``, ``free_energy``) once per row group.
    """
    labeled = rows.get("labeled")
    labeled = None if labeled is None else labeled.detach().bool().cpu()
    for name, values in rows.items():
        if name == "labeled" or values is None:
            continue
        # one transfer per tensor, on histogram steps only (a probed step already synced)
        values = values.detach().reshape(-1).double().cpu()
        if labeled is None:
            groups = {"all": torch.ones_like(values, dtype=torch.bool)}
        elif name == "eep_weight":
            groups = {"unlabeled": ~labeled}
        else:
            groups = {"labeled": labeled, "unlabeled": ~labeled}
        for group, mask in groups.items():
            chosen = values[mask & torch.isfinite(values)]
            if chosen.numel():
                yield f"{HISTOGRAM_PREFIX}/{name}/{group}", chosen


def overlay_layout(tags) -> dict:
    """A TensorBoard custom-scalars layout overlaying what a reader compares on one chart.

    ``{category: {chart: ["Multiline", [tag regexes]]}}`` for
    ``SummaryWriter.add_custom_scalars``; only charts whose tags were written:

    - each raw gradient-conflict series with its applied counterparts (``raw/last_block/gdc``
      with ``eagc/last_block/gdc``, ``eagc_authors/...``, ``coordinated/...``), one category
      per parameter group;
    - per-row feature-gradient conflict ``feature/...`` with ``feature_eagc/...``;
    - attribution sums ``attribution/unsup_rows/sum`` and ``.../group/<rows>`` with
      ``attribution_eagc/...`` (not per class), in a category marked ``(row subsample)``
      when the run's attribution covers a subsample (``attribution/subsample/rows`` written);
    - the evaluations' ``epoch/acc_all``, ``acc_old``, ``acc_new`` and the step losses.

    Args:
        tags: scalar tags as :func:`record_scalars` makes them.
    """
    tags = set(tags)
    layout: dict[str, dict[str, list]] = {}

    def add(category: str, chart: str, members: list[str]) -> None:
        present = [t for t in members if t in tags]
        if len(present) >= 2:  # one line alone is already in the Scalars tab
            exact = [f"^{re.escape(t)}$" for t in present]
            layout.setdefault(category, {})[chart] = ["Multiline", exact]

    for tag in sorted(tags):
        head, _, rest = tag.partition("/")
        if not rest:
            continue
        if head == keys.RAW:
            group, _, key = rest.rpartition("/")
            applied = [f"{kind}/{rest}" for kind in APPLIED_KINDS]
            category = f"gradient conflict {group}: raw vs applied".replace("  ", " ")
            add(category, f"{key} ({', '.join(_kinds(tags, rest))})", [tag, *applied])
        elif head == keys.FEATURE or (head == keys.ATTRIBUTION and _attribution_sum(rest)):
            # a subsampled run's sums are over its chosen rows: the category says so
            sub = head == keys.ATTRIBUTION and f"{head}/{keys.ATTRIBUTION_SUBSAMPLE}/rows" in tags
            category = f"{head} raw vs EAGC{' (row subsample)' if sub else ''}"
            add(category, f"{rest} (raw, eagc)", [tag, f"{head}_eagc/{rest}"])
    accuracy = [f"{EPOCH_PREFIX}/acc_{part}" for part in ("all", "old", "new")]
    add("accuracy and losses", "accuracy All / Old / New", accuracy)
    add("accuracy and losses", "losses sup / unsup", ["losses/sup", "losses/unsup"])
    # TensorBoard shows categories in layout order: the conflict first, attribution last
    rank = ("gradient conflict", "accuracy", keys.FEATURE, keys.ATTRIBUTION)
    order = sorted(layout, key=lambda c: next(i for i, r in enumerate(rank) if c.startswith(r)))
    return {category: layout[category] for category in order}


def _attribution_sum(rest: str) -> bool:
    """The attribution series a reader overlays: the row sums, total and by row group (not
    the closure check, the out-of-range counts or the per-class series)."""
    side, _, key = rest.partition("/")
    return side in ("unsup_rows", "sup_rows") and (key == "sum" or key.startswith("group/"))


def _kinds(tags: set, rest: str) -> list[str]:
    """``raw`` and the applied kinds that have a ``KIND/rest`` series."""
    return [keys.RAW] + [kind for kind in APPLIED_KINDS if f"{kind}/{rest}" in tags]
