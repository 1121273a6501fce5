"""entangle.report.plot_energy: axes fitted to the data, one panel per saved epoch, each
conceptor named in the spectrum and step-energy figures."""

from __future__ import annotations

import numpy as np

from entangle.report.energy import epoch_energy


def test_energy_ratio_axis_fits_the_data_not_zero_to_one():
    """Ratios all in [0.8, 1] (a small model's) were drawn over [0, 1] (issue 22)."""
    from types import SimpleNamespace

    from entangle.report.plot_energy import energy_figure

    rng = np.random.default_rng(3)
    e = SimpleNamespace(
        epoch=0,
        ratio={"labeled": rng.uniform(0.85, 0.99, 50), "unlabeled_new": rng.uniform(0.8, 0.9, 20)},
    )
    fig = energy_figure([SimpleNamespace(name="run")], {"run": [e]}, "ratio")
    lo, hi = fig.axes[0].get_xlim()
    assert 0.78 < lo < 0.81 and 0.98 < hi <= 1.01  # not 0 to 1
    assert "axis fitted to the data: 0.8" in fig.axes[0].get_xlabel()


def test_a_one_epoch_run_beside_two_epoch_runs_has_no_empty_panel():
    """An analysed checkpoint (one saved epoch) drew an empty 'no saved features' panel."""
    from types import SimpleNamespace

    from entangle.report.plot_energy import energy_figure

    rng = np.random.default_rng(4)

    def energy(epoch):
        return SimpleNamespace(epoch=epoch, ratio={"labeled": rng.uniform(0.8, 1.0, 30)})

    runs = [SimpleNamespace(name="trained"), SimpleNamespace(name="checkpoint")]
    per_run = {"trained": [energy(0), energy(5)], "checkpoint": [energy(5)]}
    fig = energy_figure(runs, per_run, "ratio")
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[0, 0].get_title() == "trained: early, epoch 0"
    assert axes[1, 0].get_title() == "trained: late, epoch 5"
    assert not axes[0, 1].get_visible()  # no panel saying what is missing
    assert axes[1, 1].get_title() == "checkpoint: only saved epoch, epoch 5"
    texts = [t.get_text() for ax in fig.axes if ax.get_visible() for t in ax.texts]
    assert "no saved features" not in texts


def _with_conceptor(path, name: str, quota_high: bool):
    """Add a run.json ``conceptor`` entry to a fake run (as the training loop writes it)."""
    import json

    meta = json.loads((path / "run.json").read_text())
    ev = [0.97] * 16 if quota_high else list(np.linspace(0.9, 0.01, 16))
    meta["conceptor"] = {
        "name": name,
        "source": "test",
        "aperture": 2.0,
        "eigenvalues": ev,
        "quota": float(np.mean(ev)),
        "effective_rank": 16.0 if quota_high else 9.0,
    }
    (path / "run.json").write_text(json.dumps(meta))
    return path


def test_spectrum_and_step_energy_name_each_conceptor(tmp_path):
    from entangle.report.energy import run_conceptor_note
    from entangle.report.load import load_runs
    from entangle.report.plot_energy import spectrum_figure, step_energy_figure
    from tests.report.fake_runs import make_run

    base = _with_conceptor(make_run(tmp_path / "b", name="base"), "known_subspace", False)
    eagc = _with_conceptor(make_run(tmp_path / "e", name="eagc", eagc=True), "eep", True)
    runs = load_runs([base, eagc])
    energies = {
        r.name: [epoch_energy(r.reader.features(ep), ep, 2.0) for ep in r.reader.feature_epochs()]
        for r in runs
    }
    fig = spectrum_figure(runs, energies)
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    # before: only conceptors refitted on each epoch, unnamed, were drawn
    assert legends[0][0].startswith("starting model's (fixed): quota 0.")
    assert legends[1][0] == "EEP's conceptor: quota 0.97, eff. rank 16.0"
    assert all("refit on epoch" in t for t in legends[1][1:]) and len(legends[1]) == 3
    steps = step_energy_figure(runs)
    titles = [ax.get_title() for ax in steps.axes]
    assert titles == [
        "base: under the starting model's conceptor",
        "eagc: under EEP's conceptor",
    ]
    # EEP's own conceptor near the identity is what says EEP cannot act (not an epoch refit)
    assert "EEP's conceptor has quota 0.97" in run_conceptor_note(runs[1].meta)
    assert run_conceptor_note(runs[0].meta) == ""


def test_eep_weight_figure_draws_the_recorded_weight_quantiles(tmp_path):
    from entangle.report.load import load_runs
    from entangle.report.plot_energy import eep_weight_figure
    from tests.report.fake_runs import make_run

    runs = load_runs([make_run(tmp_path / "e", name="eagc", eagc=True, n_steps=30)])
    fig = eep_weight_figure(runs)
    ax = fig.axes[0]
    assert ax.has_data() and "eagc" in ax.get_title()
    assert "distribution of per-row" in fig._suptitle.get_text()
