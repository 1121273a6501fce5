"""Attribution figures: class shares of cos(g_S, g_U) over training; most conflicting samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from entangle.data.sources import read_source
from entangle.report.figures import colors, new_figure, no_data, smooth, style, suptitle, text
from entangle.report.verdict_detail import class_matrix, class_name, class_ranking
from entangle.runs.keys import ATTRIBUTION, ATTRIBUTION_EAGC
from entangle.runs.records import as_float, dig, step_axis
from entangle.runs.subsample import runs_subsample_words

TOP_SAMPLES = 16
# class lines drawn per run; ten or more overlapping lines are unreadable, the rest are summed
TOP_CLASSES = 5


def _attributed_steps(run, kind: str) -> np.ndarray:
    x = step_axis(run.steps)
    keep = [i for i, s in enumerate(run.steps) if isinstance(dig(s, kind, "unsup_rows"), dict)]
    return x[keep]


def has_attribution(runs: Sequence) -> bool:
    return any(class_matrix(r)[0].size for r in runs)


def subsample_note(runs: Sequence) -> str:
    """Caption words for the attribution figures when a run's shares cover a row subsample
    (docs/attribution.md, "A subsample of rows"); "" when every run attributes every row."""
    words = runs_subsample_words(runs)
    if not words:
        return ""
    return (
        f" {words[0].upper()}{words[1:]}. Every share sum, class share and top list covers "
        "those rows only, so the shares sum to part of the cosine, not to it."
    )


def top_classes(run, top: int = TOP_CLASSES) -> tuple[list[int], list[int]]:
    """``(shown, rest)``: the ``top`` classes that pull hardest, and the others with data.

    The order is the verdict's (:func:`~entangle.report.verdict_detail.class_ranking`: most
    negative mean share per unlabeled row first), so the figure shows the classes the answer
    card names. Classes without any unlabeled-row share (fully labeled ones) are in neither.
    """
    raw, _ = class_matrix(run, ATTRIBUTION)
    has_data = [
        c
        for c in range(raw.shape[1])
        if np.isfinite(raw[:, c]).any() and np.nanmax(np.abs(raw[:, c])) > 0
    ]
    ranked = [c for c, _ in class_ranking([run]) if c in has_data]
    ranked += [c for c in has_data if c not in ranked]
    return ranked[:top], ranked[top:]


def _rest_sum(matrix: np.ndarray, rest: list[int]) -> np.ndarray:
    """``[steps]`` summed share of the ``rest`` classes (NaN where none has a value)."""
    part = matrix[:, rest]
    total = np.nansum(part, axis=1)
    return np.where(np.isfinite(part).any(axis=1), total, np.nan)


def class_attribution_figure(runs: Sequence):
    """Per-class share of cos(g_S, g_U) from unlabeled rows over training, one column per run.

    The :data:`TOP_CLASSES` classes that pull hardest (the verdict's ranking) get a line
    each; the other classes' shares are summed into one grey line (shares add up, so the
    lines still sum to the unlabeled rows' part of the cosine). Solid: raw gradients;
    dashed: EAGC-corrected (when recorded). Negative shares pull against the supervised
    direction.
    """
    with style():
        fig, axes = new_figure(1, len(runs), sharey="row", panel=(5.2, 4.2))
        for j, run in enumerate(runs):
            ax = axes[0, j]
            raw, id_kind = class_matrix(run, ATTRIBUTION)
            if raw.size == 0:
                no_data(ax, "no attribution recorded")
                ax.set_title(text(run.name), fontsize="medium")
                continue
            corrected, _ = class_matrix(run, ATTRIBUTION_EAGC)
            x = _attributed_steps(run, ATTRIBUTION)
            xc = _attributed_steps(run, ATTRIBUTION_EAGC)
            shown, rest = top_classes(run)
            palette = colors(max(len(shown), 1))
            lines = [(raw[:, c], corrected[:, c] if corrected.size else None) for c in shown]
            labels = [class_name(run, c, id_kind) for c in shown]
            styles = [(palette[i], 1.6) for i in range(len(shown))]
            if rest:
                lines.append(
                    (_rest_sum(raw, rest), _rest_sum(corrected, rest) if corrected.size else None)
                )
                labels.append(
                    f"other {len(rest)} {'classes' if id_kind == 'class' else 'clusters'} (sum)"
                )
                styles.append(("0.55", 2.2))
            for (solid, dashed), label, (color, lw) in zip(lines, labels, styles, strict=True):
                ax.plot(x, smooth(solid), color=color, lw=lw, label=text(label, 28))
                if dashed is not None:
                    ax.plot(xc, smooth(dashed), color=color, lw=lw * 0.65, ls="--")
            ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
            # below the axes: a legend inside would hide the lines it names
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="x-small", ncol=2)
            oracle = "oracle classes" if id_kind == "class" else "predicted clusters"
            ax.set_title(f"{text(run.name, 24)}: by {oracle}", fontsize="medium")
            ax.set_xlabel("training step")
            ax.set_ylabel("share of cos(g_S, g_U), smoothed")
        suptitle(
            fig,
            f"Which classes pull against the supervised direction: top {TOP_CLASSES} "
            "classes, the rest summed (dashed: EAGC)",
        )
        return fig


def top_samples(run, kind: str = ATTRIBUTION, top: int = TOP_SAMPLES) -> list[tuple]:
    """``(index, summed share, times in a step's top, labeled)`` of the most conflicting rows.

    A row that appears in many steps' top lists with negative shares ranks first.
    """
    total: dict[int, list] = {}
    for s in run.steps:
        node = dig(s, kind, "unsup_rows")
        if not isinstance(node, dict):
            continue
        idx, share = node.get("top_index") or [], node.get("top_share") or []
        lab = node.get("top_labeled") or [False] * len(idx)
        for i, v, m in zip(idx, share, lab, strict=False):
            v = as_float(v)
            if math.isnan(v):
                continue
            entry = total.setdefault(int(i), [0.0, 0, bool(m)])
            entry[0] += v
            entry[1] += 1
    ranked = sorted(total.items(), key=lambda kv: kv[1][0])[:top]
    return [(i, v, n, m) for i, (v, n, m) in ranked]


def dataset_images(config: dict):
    """``(images [N, H, W] or None, labels [N], class names)`` of the run's data, if images."""
    spec = config.get("data") if isinstance(config, dict) else None
    if not isinstance(spec, str) or spec == "synthetic":
        return None, None, None
    try:
        x, labels, names, _, kind = read_source(spec, seed=int(config.get("seed") or 0))
    except Exception:  # a moved dataset must not break the report; the figure says so
        return None, None, None
    if kind not in ("digits", "image"):
        return None, None, None
    return x, labels, names


def _image(item) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` array of one stored sample (tensor, array or PIL image)."""
    if hasattr(item, "convert"):
        item = item.convert("RGB")
    img = np.asarray(item, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    elif img.ndim == 3 and img.shape[0] == 3:
        img = np.moveaxis(img, 0, -1)
    if img.max() > 1.0:
        img = img / 255.0
    return img


# a sample's cell in the figure (data units of its run's axes): the image in a unit square,
# its two caption lines above it
CELL_COLS = 8
CAPTION_HEIGHT = 0.5
FRAME = {"fill": False, "edgecolor": "0.8", "linewidth": 1.0}


def conflicting_samples_figure(runs: Sequence):
    """A grid of the most conflicting samples' images per run (None without image data).

    One axes per run holds all its samples' images (placed by ``extent``) and captions: a
    panel per image made 96 axes for the demo's six runs, and their tick and text layout
    was most of the figure's cost (measured in docs/performance.md).
    """
    panels = []
    for run in runs:
        images, labels, names = dataset_images(run.config)
        rows = top_samples(run)
        if images is not None and rows:
            panels.append((run, images, labels, names, rows))
    if not panels:
        return None
    from matplotlib.patches import Rectangle

    heights = [math.ceil(len(p[4]) / CELL_COLS) for p in panels]
    with style():
        # 1.3 x 1.5 inches a sample, as when each had its own panel
        height = 1.5 * sum(heights) / len(panels)
        fig, axes = new_figure(len(panels), 1, panel=(1.3 * CELL_COLS, height))
        axes[0, 0].get_gridspec().set_height_ratios(heights)
        for ax, n_rows, (run, images, labels, names, rows) in zip(
            axes[:, 0], heights, panels, strict=True
        ):
            cell = 1.0 + CAPTION_HEIGHT
            for k, (index, share, count, is_labeled) in enumerate(rows):
                img = _image(images[index])
                left = float(k % CELL_COLS)
                top = (n_rows - k // CELL_COLS) * cell - CAPTION_HEIGHT
                # the image keeps its aspect inside the unit square below its caption, framed
                h, w = img.shape[:2]
                scale = 0.88 / max(h, w)
                dx, dy = (1.0 - w * scale) / 2, (1.0 - h * scale) / 2
                ax.add_patch(Rectangle((left + dx, top - 1 + dy), w * scale, h * scale, **FRAME))
                ax.imshow(
                    img,
                    cmap="gray_r" if img.ndim == 2 else None,
                    extent=(left + dx, left + 1 - dx, top - 1 + dy, top - dy),
                )
                label = names[int(labels[index])] if names is not None else "?"
                mark = "L" if is_labeled else "U"
                ax.text(
                    left + 0.5,
                    top + 0.05,
                    f"#{index} {text(label, 8)} {mark}\n{share:+.3f} x{count}",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
            ax.set_xlim(-0.05, CELL_COLS + 0.05)
            ax.set_ylim(-0.05, n_rows * cell)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            # the whole run name (up to text()'s limit): 14 characters cut 'baseline-reference'
            ax.set_ylabel(text(run.name), fontsize=8)
        fig.suptitle("Most conflicting samples (summed share of cos over the steps they top)")
        return fig
