"""Reports of ``entangle analyze`` runs: checkpoints and gradient batches, never training.

The run directories are written by hand in analyze's layout (entangle/analysis/run.py): a
frozen checkpoint's "steps" are gradient batches of the same weights, its one evaluation and
its saved features are numbered 0 whatever epoch the checkpoint's file records.
"""

from __future__ import annotations

import numpy as np

from entangle.report.load import load_runs
from entangle.report.verdict import compute_verdict
from entangle.runs.directory import RunWriter
from tests.report.fake_runs import feature_arrays


def _analysed(path, *, epoch, seed=0, reference=None, acc=0.8):
    rng = np.random.default_rng(epoch)
    config = {"checkpoint": f"/ckpt/{path.name}.pt", "grad_batches": 4, "batch_size": 64,
              "data": "digits", "n_samples": 1797, "seed": seed, "eagc": True,
              "reference": reference, "eep_weight": 0.5, "aga_weight": 0.7,
              "checkpoint_meta": {"epoch": epoch, "data": "digits"}}  # fmt: skip
    with RunWriter(path, config=config, seed=seed, name=path.name) as w:
        for step in range(4):
            cos = float(rng.normal(-0.05, 0.1))
            raw = {"cos": cos, "gdc": 0.1 - 0.2 * cos}
            fixed = {"cos": cos + 0.01, "gdc": 0.09 - 0.2 * cos}
            w.write_step({"step": step, "raw": {"last_block": raw}, "eagc": {"last_block": fixed}})
        w.write_epoch({"epoch": 0, "step": 0, "acc_all": acc, "acc_old": acc, "acc_new": acc})
        w.save_features(0, **feature_arrays(rng, 12, 8))
        w.finish({})
    return path


def test_analysed_checkpoints_are_named_with_their_epochs_and_batches(tmp_path):
    runs = load_runs([_analysed(tmp_path / "base", epoch=4),
                      _analysed(tmp_path / "eagc", epoch=5, acc=0.9)])  # fmt: skip
    assert runs[0].is_analysis and runs[0].epoch_label(0) == "checkpoint (epoch 4)"
    verdict = compute_verdict(runs)
    card = "\n".join(verdict.card)
    assert verdict.card[0].startswith("Compared: 2 checkpoints, base (checkpoint (epoch 4)), "
                                      "eagc (checkpoint (epoch 5))")  # fmt: skip
    assert "the same 4 gradient batches of 64 rows (seed 0" in verdict.card[0]
    # what EAGC's correction is here, and that nothing applied it
    assert "computed on each batch, never applied" in verdict.card[0]
    assert "EEP only (beta 0.5), with the conceptor of the checkpoint's own labeled" in card
    assert "of the 4 gradient batches of the frozen checkpoint" in card
    assert "training step" not in card and "last epoch" not in card and "seeds)" not in card
    assert "raw GDC 0.1" in card and "(one run of 4 gradient batches: too few for an" in card
    assert "(c) Accuracy, each checkpoint's own evaluation, minus base: eagc: All +0.100" in card
    rows = "\n".join(f"{q} {v}" for _, q, v in verdict.rows)
    assert "training steps" not in rows and "seed" not in rows and "4 gradient batches" in rows
    assert verdict.headline is None  # no baseline: two checkpoints, compared as they are
    acc = next(c for c in verdict.comparisons if c["metric"] == "acc_all_last")
    assert (acc["a"], acc["b"], acc["window"]) == ("eagc", "base", "the checkpoint's evaluation")
    assert abs(acc["difference"] - 0.1) < 1e-12
    with_ref = load_runs([_analysed(tmp_path / "r", epoch=4, reference="/ckpt/ref.pt")])
    assert "reference model ref.pt" in compute_verdict(with_ref).card[0]


def test_analysis_report_page_and_figures_speak_of_checkpoints(tmp_path, monkeypatch):
    from entangle.report import build, plot_curves, plot_energy, plot_overlap
    from entangle.report.build import build_report

    titles = []

    def keep(maker):
        def wrapped(*args, **kwargs):
            fig = maker(*args, **kwargs)
            if fig is not None:
                titles.extend(ax.get_title() for ax in fig.axes)
                titles.extend(ax.get_xlabel() for ax in fig.axes)
                titles.append(fig._suptitle.get_text() if fig._suptitle else "")
            return fig

        return wrapped

    wrap = ((plot_overlap, "tsne_figure"), (plot_curves, "conflict_figure"),
            (plot_energy, "energy_figure"), (plot_curves, "comparison_figure"))  # fmt: skip
    for module, name in wrap:
        monkeypatch.setattr(module, name, keep(getattr(module, name)))
    paths = [_analysed(tmp_path / "base", epoch=4), _analysed(tmp_path / "eagc", epoch=5)]
    html = build_report(paths, tmp_path / "report", tsne_max_points=50).read_text("utf-8")
    text = "\n".join(titles)
    assert "base, checkpoint (epoch 4): old vs new" in text
    assert "eagc, checkpoint (epoch 5): old vs new" in text and "epoch 0" not in text
    assert "gradient batch (frozen checkpoint)" in text and "training step" not in text
    assert "smoothed" not in text and "per gradient batch of each checkpoint" in text
    assert "2. Curves per gradient batch" in html and "Curves over training" not in html
    assert "Gradient conflict per gradient batch" in html
    assert "Checkpoints are compared as they are" in html and "Comparisons are of seed" not in html
    assert "Gradient batches</th>" in html and "Probed steps" not in html
    assert build  # the module whose figures were wrapped
