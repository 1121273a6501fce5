"""``build_report``: read runs, compute the report's numbers, draw figures, write HTML + PNG."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import tomllib
import torch

from entangle.errors import EntangleValueError
from entangle.report import (
    html,
    plot_attribution,
    plot_curves,
    plot_energy,
    plot_logs,
    plot_overlap,
)
from entangle.report.cache import ReportCache, cached_figure, runs_digest
from entangle.report.figures import figure_bytes, write_figure
from entangle.report.load import RunData, load_runs
from entangle.report.output import atomic_report_dir, is_report_dir
from entangle.report.precompute import report_energies, start_report_maps
from entangle.report.tsne import BACKENDS
from entangle.runs.summary import checkpoint_gradient_summary, run_summary
from entangle.runs.values import utf8


def build_report(
    runs: Sequence,
    out,
    *,
    pdf: bool = False,
    tsne_max_points: int = 20000,
    tsne_backend: str = "auto",
    seed: int = 0,
    names: Sequence[str] | None = None,
    workers: int | None = None,
    on_map: Callable[[int, int], None] | None = None,
    cache_from: Sequence[Path] = (),
) -> Path:
    """Write a self-contained HTML report (plus every figure as PNG) for one or more runs.

    Args:
        runs: run directories written by :class:`entangle.RunWriter`, complete or not.
        out: output folder; replaced atomically if it holds an earlier entangle report,
            refused if it holds anything else.
        pdf: also write each figure as a vector PDF.
        tsne_max_points: cap on the rows of each t-SNE map (stratified by class).
        tsne_backend: ``"auto"``, ``"opentsne"`` or ``"sklearn"``.
        seed: seeds t-SNE and its subsampling.
        names: display names, one per run (default: the runs' own names).
        workers: processes for the t-SNE maps (default: the available cores).
        on_map: progress callback ``(maps done, maps in all)``.
        cache_from: more folders whose ``cache/`` entries the report may read (keyed by
            content and settings like its own, so a hit is the value it would compute).

    A second report of the same runs into the same ``out`` reuses the previous report's
    t-SNE maps and conceptor refits (``out/cache/``, keyed by the features files' content).

    Returns:
        path of ``out/index.html``.

    Example:
        >>> build_report(["runs/baseline", "runs/eagc"], "reports/compare")  # doctest: +SKIP
    """
    if tsne_backend not in BACKENDS:
        raise EntangleValueError(f"tsne_backend must be one of {BACKENDS}, got {tsne_backend!r}")
    if tsne_max_points < 5:
        raise EntangleValueError(f"tsne_max_points must be at least 5, got {tsne_max_points}")
    out = Path(out)
    loaded = load_runs(runs, names)
    from entangle import __version__

    previous = out if is_report_dir(out) else None
    with _one_torch_thread(), atomic_report_dir(out, generator=f"entangle {__version__}") as tmp:
        cache = ReportCache(previous, tmp, cache_from)
        digest = runs_digest(
            [run.reader.path for run in loaded],
            [run.name for run in loaded],
            {"max_points": tsne_max_points, "backend": tsne_backend, "seed": seed},
        )
        # the maps compute in worker processes while this one fits the energies and draws
        # every other figure; the t-SNE figure is drawn last
        with start_report_maps(
            loaded,
            cache,
            max_points=tsne_max_points,
            backend=tsne_backend,
            seed=seed,
            workers=workers,
            on_map=on_map,
        ) as maps:
            html = _render(
                loaded,
                tmp,
                pdf=pdf,
                energies=report_energies(loaded, cache, maps),
                overlaps=maps.overlaps,
                cache=cache,
                digest=digest,
            )
        # a non-UTF-8 locale hands file names over as lone surrogates (runs/values.utf8)
        (tmp / "index.html").write_bytes(utf8(html))
    return out / "index.html"


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread while the report runs, restored afterwards.

    The report's torch work is small (a D x D eigendecomposition per conceptor refit, k-NN
    shares) and runs beside the t-SNE workers that already fill the cores: with two threads,
    12 refits of a 128-d conceptor took 2.2 s of CPU (the threads spin at their barriers on a
    busy machine), with one 0.04 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.cache
def figure_texts() -> dict[str, dict[str, str]]:
    """``{figure name: {"title", "caption"}}`` from templates/figures.toml."""
    text = resources.files("entangle.report").joinpath("templates/figures.toml").read_text("utf-8")
    return tomllib.loads(text)


def _figure(runs, maker, name: str, only, *, tmp: Path, pdf, cache, digest, note: str = ""):
    """One figure of the page (drawn, or read from the cache), titled and captioned from
    templates/figures.toml (its ``frozen`` words when every run is an analysed checkpoint;
    ``note``: text the runs add to the caption); ``only``: ``(runs
    kept, why the others are left out)`` or None, and the maker sees the kept runs. Returns
    what html.render_html places (a RenderedFigure, one line of text when no run has what it
    shows, or None)."""
    texts = figure_texts()[name]
    # analysed checkpoints (entangle analyze): their "steps" are gradient batches of frozen
    # weights, not training; a figure with its own words for them says so
    frozen = "frozen" in texts and all(r.is_analysis for r in runs)
    texts = texts["frozen"] if frozen else texts
    title, caption = texts["title"], texts["caption"] + note
    kept = runs if only is None else only[0]
    if not kept:  # one line in the section instead of a figure of empty panels
        return f"{title}: not drawn, no run has what it shows ({only[1]})."
    left = [r.name for r in runs if r not in kept]
    if left:
        caption += f" Left out: {', '.join(left)} ({only[1]})."

    def draw():
        figure = maker(kept)
        return None if figure is None else figure_bytes(figure, pdf)

    drawn = cached_figure(cache, digest, name, pdf, draw)
    return None if drawn is None else write_figure(name, title, caption, tmp, *drawn)


def _sections(runs: list[RunData], fig, energies, overlaps, soc_note: str) -> dict[str, list]:
    """The page's figures by section, in page order (``fig(maker, name, only=None)``);
    ``soc_note`` ends the training curves' caption (the verdict's ProbeSet SOC note);
    ``overlaps``: ``() -> one Overlap or None per run``, called after every other figure is
    drawn (it waits for the t-SNE maps)."""
    probed = (
        [r for r in runs if _probed(r)],
        "no probe records: imported from a training log, or written without a Probe",
    )
    logged = ([r for r in runs if plot_logs.has_logged_curves([r])], "no imported training log")
    with_features = ([r for r in runs if energies.get(r.name)], "no saved features")
    attributed = (
        [r for r in runs if plot_attribution.has_attribution([r])],
        "no class attribution recorded",
    )
    has_free = any(e.free for es in energies.values() for e in es)
    sections = {
        "curves": [
            fig(plot_curves.conflict_figure, "conflict_curves", probed),
            fig(
                plot_curves.training_figure,
                "training_curves",
                probed,
                note=" " + soc_note,
            ),
            # a report of probed runs only has no imported log to speak of
            fig(plot_logs.logged_figure, "logged_curves", logged) if logged[0] else None,
        ],
        "energy": [
            fig(
                lambda rs: plot_energy.energy_figure(rs, energies, "ratio"),
                "energy_ratio",
                with_features,
            ),
            fig(
                lambda rs: plot_energy.energy_figure(rs, energies, "free"),
                "free_energy",
                with_features,
            )
            if has_free
            else None,
            fig(
                lambda rs: plot_energy.spectrum_figure(rs, energies),
                "conceptor_spectrum",
                with_features,
            ),
            fig(plot_energy.step_energy_figure, "step_energy", probed),
            fig(plot_energy.eep_weight_figure, "eep_weight", probed),
        ],
        "overlap": [],  # drawn last, below
        "comparison": (
            [fig(plot_curves.comparison_figure, "comparison_curves")] if len(runs) > 1 else []
        ),
        "attribution": [
            fig(maker, name, attributed, note=plot_attribution.subsample_note(attributed[0]))
            for maker, name in (
                (plot_attribution.class_attribution_figure, "class_attribution"),
                (plot_attribution.conflicting_samples_figure, "conflicting_samples"),
            )
        ],
    }
    # the worker processes computed the maps while the figures above were drawn
    maps = overlaps()
    mapped = [i for i, o in enumerate(maps) if o is not None and o.coords is not None]
    with_maps = ([runs[i] for i in mapped], "no saved features")
    class_names = [_class_names(run.config) for run in runs]
    sections["overlap"] = [
        fig(
            lambda rs: plot_overlap.tsne_figure(
                rs, [maps[i] for i in mapped], [class_names[i] for i in mapped]
            ),
            "tsne_overlap",
            with_maps,
        ),
    ]
    return sections


def _render(runs: list[RunData], tmp: Path, *, pdf, energies, overlaps, cache, digest) -> str:
    # lazy: the verdict's intervals import scipy.stats, slow to import, only when rendering
    from entangle.report.verdict import compute_verdict, verdict_json
    from entangle.report.verdict_detail import probeset_note  # lazy: scipy.stats, as above

    def fig(maker, name, only=None, note=""):
        return _figure(
            runs, maker, name, only, tmp=tmp, pdf=pdf, cache=cache, digest=digest, note=note
        )

    # the verdict needs no map: computed while the workers still run
    verdict = compute_verdict(runs)
    sections = _sections(runs, fig, energies, overlaps, probeset_note(runs) or "")
    (tmp / "verdict.json").write_bytes(utf8(verdict_json(verdict)))
    return html.render_html(
        runs,
        sections=sections,
        verdict=verdict,
        summaries=[_summary(r) for r in runs],
        energies=energies,
        overlaps=overlaps(),
    )


def _summary(run: RunData) -> dict:
    if _probed(run):
        return run_summary(run.steps, run.epochs, run.group)
    # an imported run's steps are its log's lines, not probed steps: no step row is its
    out = run_summary([], run.epochs, run.group)
    out.update(steps=float("nan"), nan_steps=float("nan"), nan_cos_raw=float("nan"))
    # an attached analysis' gradient batches, shown labelled (report/summary.py), never
    # as the step statistics above
    out.update(probed=False, checkpoint=checkpoint_gradient_summary(run.epochs, run.group))
    return out


def _probed(run: RunData) -> bool:
    """True when the run holds probe step records (raw gradient metrics)."""
    return run.config.get("source") != "import-log" and any(
        isinstance(s.get("raw"), dict) for s in run.steps
    )


def _class_names(config: dict):
    names = config.get("class_names") if isinstance(config, dict) else None
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    return None
