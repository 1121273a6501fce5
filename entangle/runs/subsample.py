"""What a row-subsampled attribution covered, read from a run's step records.

``Probe(attribution_rows=m)`` attributes ``m`` seeded rows per attributed step and records
``{"rows", "of", "batch_rows", "seed"}`` under ``attribution.subsample``
(docs/attribution.md, "A subsample of rows"). The report's captions and verdict, and the
TensorBoard export, say the same words from here. Torch-free, like the rest of ``runs``.
"""

from __future__ import annotations

from entangle.runs.keys import ATTRIBUTION, ATTRIBUTION_SUBSAMPLE
from entangle.runs.records import dig


def subsample_label(entries) -> str:
    """``"8 of 64"`` (``"6-8 of 48-64"`` when steps differ) from ``subsample`` entries."""

    def span(key: str) -> str:
        values = sorted({int(e[key]) for e in entries if isinstance(e.get(key), int | float)})
        if not values:
            return "?"
        return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"

    return f"{span('rows')} of {span('of')}"


def subsample_words(label: str | None = None) -> str:
    """What a subsampled attribution's numbers cover, as the report and TensorBoard say it;
    ``label``: :func:`subsample_label` (None: the rows are named elsewhere)."""
    rows = f": {label} rows" if label else " of rows"
    return f"attribution over a subsample{rows} per attributed step (seeded by step)"


def runs_subsample_words(runs, sep: str = "; ") -> str:
    """:func:`subsample_words` for a set of runs: "" when each attributes every row, the one
    label when they agree, else each run's rows (``name: label``, joined by ``sep``)."""
    labels = [run_subsample(run) for run in runs]
    if not any(labels):
        return ""
    if len(set(labels)) == 1:
        return subsample_words(labels[0])
    pairs = zip(runs, labels, strict=True)
    each = sep.join(f"{run.name}: {label or 'every row'}" for run, label in pairs)
    return f"{subsample_words()} ({each})"


def run_subsample(run) -> str | None:
    """``"8 of 64"``: the rows a run's attributed steps cover when subsampled, else None.

    A run whose attributed steps are only partly subsampled (resumed with another
    ``attribution_rows``) says on how many.
    """
    attributed = [s for s in run.steps if isinstance(dig(s, ATTRIBUTION, "unsup_rows"), dict)]
    entries = [
        e for s in attributed if isinstance(e := dig(s, ATTRIBUTION, ATTRIBUTION_SUBSAMPLE), dict)
    ]
    if not entries:
        return None
    label = subsample_label(entries)
    if len(entries) < len(attributed):
        label += (
            f" (on {len(entries)} of {len(attributed)} attributed steps, every row on the rest)"
        )
    return label
