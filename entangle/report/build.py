"""``build_report``: read runs, compute the report's numbers, draw figures, write HTML + PNG."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.report.cache import ReportCache, cached_figure, runs_digest
from entangle.report.figures import figure_bytes, write_figure
from entangle.report.load import RunData, load_runs
from entangle.report.output import atomic_report_dir, is_report_dir
from entangle.report.precompute import report_numbers
from entangle.report.tsne import BACKENDS
from entangle.runs.summary import run_summary


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
    with atomic_report_dir(out, generator=f"entangle {__version__}") as tmp:
        cache = ReportCache(previous, tmp)
        energies, overlaps = report_numbers(
            loaded,
            cache,
            max_points=tsne_max_points,
            backend=tsne_backend,
            seed=seed,
            workers=workers,
            on_map=on_map,
        )
        digest = runs_digest(
            [run.reader.path for run in loaded],
            [run.name for run in loaded],
            {"max_points": tsne_max_points, "backend": tsne_backend, "seed": seed},
        )
        html = _render(
            loaded,
            tmp,
            pdf=pdf,
            energies=energies,
            overlaps=overlaps,
            cache=cache,
            digest=digest,
        )
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return out / "index.html"


def _render(runs: list[RunData], tmp: Path, *, pdf, energies, overlaps, cache, digest) -> str:
    from entangle.report import (
        html,
        plot_attribution,
        plot_curves,
        plot_energy,
        plot_logs,
        plot_overlap,
    )
    from entangle.report.verdict import compute_verdict, verdict_json
    from entangle.report.verdict_detail import probeset_note

    def fig(maker, name, title, caption, only=None):
        """``only``: ``(runs kept, why the others are left out)``; the maker sees the kept."""
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

    probed = (
        [r for r in runs if _probed(r)],
        "no probe records: imported from a training log, or written without a Probe",
    )
    logged = ([r for r in runs if plot_logs.has_logged_curves([r])], "no imported training log")
    with_features = ([r for r in runs if energies.get(r.name)], "no saved features")
    mapped = [i for i, o in enumerate(overlaps) if o is not None and o.coords is not None]
    with_maps = ([runs[i] for i in mapped], "no saved features")
    attributed = (
        [r for r in runs if plot_attribution.has_attribution([r])],
        "no class attribution recorded",
    )

    curves = [
        fig(
            lambda rs: plot_curves.conflict_figure(rs),
            "conflict_curves",
            "Gradient conflict over training",
            "Cosine between the supervised and unsupervised gradients and the GDC per probed "
            "step; faint points are single steps, lines a centred moving average.",
            probed,
        ),
        fig(
            lambda rs: plot_curves.training_figure(rs),
            "training_curves",
            "Norm ratio, ProbeSet SOC and accuracy",
            "Ratio of gradient norms (log scale; 1 = equal), the subspace overlap coefficient "
            "of novel-class ProbeSet features with the known-class subspace, and clustering "
            "accuracy per evaluation (protocol as in the summary). Oracle: SOC and the Old/New "
            "accuracy split use the ground-truth novel classes, which the method never sees. "
            + (probeset_note(runs) or ""),
            probed,
        ),
        fig(
            lambda rs: plot_logs.logged_figure(rs),
            "logged_curves",
            "Values from imported training logs",
            "Every series the run's own log holds (text log losses and values, TensorBoard "
            "scalars, the epoch average loss), as it printed them (entangle import-log; not "
            "recomputed), grouped: losses, learning rate, accuracies, other values; a group "
            "of more than 8 series continues in the next panel, none is dropped. Steps: epoch x "
            "batches + batch for text logs, TensorBoard's own step for its series.",
            logged,
        )
        if logged[0]  # a report of probed runs only has no imported log to speak of
        else None,
    ]
    has_free = any(e.free for es in energies.values() for e in es)
    energy_figs = [
        fig(
            lambda rs: plot_energy.energy_figure(rs, energies, "ratio"),
            "energy_ratio",
            "Known-subspace energy ratio",
            "Energy ratio of each sample under a conceptor refitted on that epoch's labeled "
            "features (not EEP's conceptor); the axis spans the data's range, not [0, 1]; "
            "new-class samples close to 1 lie inside the known "
            "subspace. Oracle: the "
            "unlabeled old/new grouping uses ground truth the method never sees.",
            with_features,
        ),
        fig(
            lambda rs: plot_energy.energy_figure(rs, energies, "free"),
            "free_energy",
            "Logit free energy",
            "Free energy -logsumexp(logits / T) per sample, T the classifier's softmax "
            "temperature from the run config (SimGCD: 0.1; shown on each axis); lower means a "
            "more confident classifier. Oracle: the unlabeled old/new grouping uses ground truth.",
            with_features,
        )
        if has_free
        else None,
        fig(
            lambda rs: plot_energy.spectrum_figure(rs, energies),
            "conceptor_spectrum",
            "Conceptor spectrum",
            "Solid (thick grey): the run's own conceptor, the one its step energies use "
            "(EAGC runs: EEP's "
            "conceptor, fitted on the reference model's labeled features; baselines: the "
            "starting model's, fixed). Dashed: conceptors refitted on an epoch's labeled "
            "features; where a refit equals the run's own, it lies on the grey line. "
            "Quota = mean eigenvalue; a spectrum flat near 1 means the known subspace "
            "is the whole space, and EEP's flat near 1 means EEP cannot act.",
            with_features,
        ),
        fig(
            lambda rs: plot_energy.step_energy_figure(rs),
            "step_energy",
            "Energy ratio over training",
            "Per probed step, the energy ratio of the batch's rows under the run's own fixed "
            "conceptor (EEP's for EAGC runs, the starting model's for baselines), so the runs "
            "compare; lines are medians, bands quartiles. Oracle: the unlabeled old/new "
            "grouping uses ground truth.",
            probed,
        ),
        fig(
            lambda rs: plot_energy.eep_weight_figure(rs),
            "eep_weight",
            "EEP coefficient distribution",
            "Per-row energy-aware elastic projection weights of unlabeled rows over training "
            "(bands: quartiles and deciles).",
            probed,
        ),
    ]
    class_names = [_class_names(run.config) for run in runs]
    overlap_figs = [
        fig(
            lambda rs: plot_overlap.tsne_figure(
                rs, [overlaps[i] for i in mapped], [class_names[i] for i in mapped]
            ),
            "tsne_overlap",
            "t-SNE of the saved features",
            "Maps of the last saved epoch, PCA to 50 dimensions then t-SNE; all panels share "
            "axis limits. k-NN new->old: share of a new sample's 10 nearest neighbours that "
            "are old, in feature space (cosine) and in the map; 'mixed' is the share expected "
            "if old and new were perfectly mixed. Oracle: old/new colours and the k-NN shares "
            "use the ground-truth novel mask, which the method never sees.",
            with_maps,
        ),
    ]
    comparison = []
    if len(runs) > 1:
        comparison = [
            fig(
                lambda rs: plot_curves.comparison_figure(rs),
                "comparison_curves",
                "Runs compared",
                "Smoothed cosine conflict, GDC and All accuracy of every run on shared axes "
                "(each run's accuracy protocol as in the summary).",
            ),
        ]
    attribution = [
        fig(
            lambda rs: plot_attribution.class_attribution_figure(rs),
            "class_attribution",
            "Conflict by class",
            "Exact share of cos(g_S, g_U) on the attributed group contributed by the unlabeled "
            "rows of each class, per attributed step (smoothed; solid raw, dashed "
            "EAGC-corrected). The shares of all rows sum to the cosine (docs/attribution.md). "
            "Oracle: classes are ground truth where the run recorded it.",
            attributed,
        ),
        fig(
            lambda rs: plot_attribution.conflicting_samples_figure(rs),
            "conflicting_samples",
            "Most conflicting samples",
            "Samples whose rows most often carry the most negative shares of cos(g_S, g_U): "
            "dataset index, class (oracle), L/U = labeled/unlabeled, summed share and the "
            "number of steps in which the row was among the 8 most conflicting.",
            attributed,
        ),
    ]
    verdict = compute_verdict(runs)
    (tmp / "verdict.json").write_text(verdict_json(verdict), encoding="utf-8")
    return html.render_html(
        runs,
        sections={
            "curves": curves,
            "energy": energy_figs,
            "overlap": overlap_figs,
            "comparison": comparison,
            "attribution": attribution,
        },
        verdict=verdict,
        summaries=[_summary(r) for r in runs],
        energies=energies,
        overlaps=overlaps,
    )


def _summary(run: RunData) -> dict:
    if _probed(run):
        return run_summary(run.steps, run.epochs, run.group)
    # an imported run's steps are its log's lines, not probed steps: no step row is its
    out = run_summary([], run.epochs, run.group)
    out.update(steps=float("nan"), nan_steps=float("nan"), nan_cos_raw=float("nan"))
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
