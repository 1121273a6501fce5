"""Feature overlap of old and new classes: t-SNE maps and k-NN mixing numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from entangle.defaults import KNN_K
from entangle.metrics import knn_overlap
from entangle.report.figures import colors, new_figure, no_data, style, suptitle, text
from entangle.report.load import epoch_label
from entangle.report.tsne import tsne_embed

# beyond this many classes a per-class legend is unreadable; colours alone remain
MAX_LEGEND_CLASSES = 20


@dataclass
class Overlap:
    """A run's t-SNE map and k-NN overlap for one saved epoch.

    ``coords`` ``[m, 2]`` map of the kept rows, ``novel`` / ``labels`` ``[m]`` for those rows,
    ``n_total`` rows saved; ``knn_feature`` / ``knn_map``: :func:`entangle.metrics.knn_overlap`
    dicts in feature space (cosine) and in the map (Euclidean).
    """

    epoch: int
    n_total: int
    coords: np.ndarray | None = None
    novel: np.ndarray | None = None
    labels: np.ndarray | None = None
    knn_feature: dict = field(default_factory=dict)
    knn_map: dict = field(default_factory=dict)
    note: str = ""

    @property
    def n_shown(self) -> int:
        return 0 if self.coords is None else int(self.coords.shape[0])


def finite_rows(arrays) -> np.ndarray:
    """``[m]`` indices of the rows whose features are all finite (the rows a map can show)."""
    features = np.asarray(arrays["features"], dtype=np.float32)
    return np.flatnonzero(np.isfinite(features).all(axis=1))


def compute_overlap(
    arrays, epoch: int, *, max_points: int, backend: str, seed: int, tsne_map=None
) -> Overlap:
    """t-SNE map (class-stratified cap) and k-NN overlap of one epoch's saved features.

    Args:
        arrays: ``RunReader.features()`` dict with ``features [n, D]``, ``labels [n]``,
            ``novel [n]``.
        epoch: the epoch the arrays belong to.
        max_points, backend, seed: see :func:`entangle.report.tsne.tsne_embed`.
        tsne_map: ``(coords, kept)`` already computed for the :func:`finite_rows` (from the
            report's cache or its worker processes); None computes it here.
    """
    import torch

    features = np.asarray(arrays["features"], dtype=np.float32)
    labels = np.asarray(arrays["labels"])
    novel = np.asarray(arrays["novel"], dtype=bool)
    out = Overlap(epoch=epoch, n_total=int(features.shape[0]))
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        out.note = f"{int((~finite).sum())} rows with NaN/inf features left out. "
    rows = np.flatnonzero(finite)
    if rows.size < 5:
        out.note += "too few finite feature rows for a t-SNE map"
        return out
    if tsne_map is None:
        tsne_map = tsne_embed(
            features[rows], seed=seed, max_points=max_points, labels=labels[rows], backend=backend
        )
    coords, kept = tsne_map
    kept = rows[kept]
    out.coords, out.novel, out.labels = coords, novel[kept], labels[kept]
    n_new = int(out.novel.sum())
    if 0 < n_new < kept.size and kept.size > KNN_K:
        mask = torch.from_numpy(out.novel)
        out.knn_feature = knn_overlap(torch.from_numpy(features[kept]), mask, k=KNN_K)
        out.knn_map = knn_overlap(torch.from_numpy(coords), mask, k=KNN_K, metric="euclidean")
    else:
        out.note += "k-NN overlap needs both old and new samples"
    return out


def _limits(overlaps: Sequence[Overlap | None]):
    pts = [o.coords for o in overlaps if o is not None and o.coords is not None]
    if not pts:
        return None
    allpts = np.concatenate(pts)
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    pad = 0.03 * np.maximum(hi - lo, 1e-9)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def _fmt(d: dict, key: str) -> str:
    v = d.get(key, math.nan)
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def tsne_figure(runs: Sequence, overlaps: Sequence[Overlap | None], class_names: Sequence):
    """t-SNE maps, old vs new (top) and by class (bottom), one column per run, shared limits.

    Args:
        runs: the report's runs.
        overlaps: one :class:`Overlap` (or None: no features) per run.
        class_names: per run, a list of class names or None.
    """
    limits = _limits(overlaps)
    pair = colors(2)
    with style():
        fig, axes = new_figure(2, len(runs), panel=(5.2, 4.6))
        for j, (run, o) in enumerate(zip(runs, overlaps, strict=True)):
            top, bottom = axes[0, j], axes[1, j]
            if o is None or o.coords is None:
                for ax in (top, bottom):
                    no_data(ax, (o.note if o else "") or "no saved features")
                    ax.set_title(text(run.name), fontsize="medium")
                continue
            size = 3 if o.n_shown > 5000 else 9
            sample = (
                f"{o.n_shown} of {o.n_total} samples, stratified by class"
                if o.n_shown < o.n_total
                else f"all {o.n_total} samples"
            )
            groups = ((False, pair[0], "old classes"), (True, pair[1], "new classes"))
            for is_new, color, label in groups:
                m = o.novel == is_new
                top.scatter(*o.coords[m].T, s=size, color=color, alpha=0.6, lw=0, label=label)
            top.legend(loc="upper right", fontsize="small", markerscale=2)
            top.set_title(
                f"{text(run.name)}, {epoch_label(run, o.epoch)}: old vs new ({sample})\n"
                f"k-NN new->old: features {_fmt(o.knn_feature, 'new_to_old')}, "
                f"map {_fmt(o.knn_map, 'new_to_old')} "
                f"(mixed: {_fmt(o.knn_feature, 'new_to_old_chance')})",
                fontsize="small",
            )
            classes = np.unique(o.labels)
            palette = colors(len(classes))
            names = class_names[j] if class_names[j] is not None else None
            for c, color in zip(classes, palette, strict=True):
                m = o.labels == c
                name = names[int(c)] if names is not None and 0 <= int(c) < len(names) else c
                bottom.scatter(
                    *o.coords[m].T, s=size, color=color, alpha=0.7, lw=0, label=text(name, 24)
                )
            if classes.size <= MAX_LEGEND_CLASSES:
                # below the panel, so maps with and without a legend keep the same width
                bottom.legend(
                    loc="upper center",
                    bbox_to_anchor=(0.5, -0.13),
                    ncol=min(4, classes.size),
                    fontsize="x-small",
                    markerscale=2,
                    title="class",
                )
            bottom.set_title(
                f"{text(run.name)}: coloured by ground-truth class ({classes.size} classes)",
                fontsize="small",
            )
            for ax in (top, bottom):
                if limits is not None:
                    ax.set_xlim(*limits[0])
                    ax.set_ylim(*limits[1])
                ax.set_xlabel("t-SNE 1")
                ax.set_ylabel("t-SNE 2")
        suptitle(fig, "Feature overlap of old and new classes (t-SNE, shared axes across runs)")
        return fig
