"""The imported-log figure draws every logged series, grouped, none dropped (issue 22)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from entangle.report.plot_logs import SERIES_PER_PANEL, group_of, logged_figure, panels

# the original GCD code's TensorBoard tags (sgvaze/generalized-category-discovery
# methods/contrastive_training/contrastive_training.py: 'Loss', 'Train Acc Labelled Data', 'LR'),
# which a cap of 8 series dropped before, beside 12 per-step loss components
GCD_TAGS = ["Loss", "LR", "Train Acc Labelled Data"]
LOSSES = [f"loss_part_{i}" for i in range(12)]


def _run():
    steps = [
        {"step": s, "log_losses": {n: 1.0 + s + i for i, n in enumerate(LOSSES)}} for s in range(5)
    ]
    epochs = [
        {"epoch": e, "loss_avg": 5.0 - e, "scalars": {t: 0.1 * e for t in GCD_TAGS}}
        for e in range(3)
    ]
    return SimpleNamespace(name="imported", steps=steps, epochs=epochs)


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("cls_loss", "losses"),
        ("LR", "learning rate"),
        ("lr/group0", "learning rate"),
        ("Train Acc Labelled Data", "accuracies"),
        ("Unlabeled pred Old", "other values"),
        ("clr_scale", "other values"),
    ],
)
def test_series_groups(name, group):
    assert group_of(name) == group


def test_every_series_is_drawn_in_importance_order():
    run = _run()
    titles = [t for t, _ in panels(run)]
    assert titles == [
        "losses, per step (1 of 2)",
        "losses, per step (2 of 2)",
        "losses, per epoch",
        "learning rate, per epoch",
        "accuracies, per epoch",
    ]
    fig = logged_figure([run])
    drawn = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert sorted(drawn) == sorted(
        LOSSES + [f"{t} (per epoch)" for t in GCD_TAGS] + ["epoch average loss (per epoch)"]
    )
    assert max(len(ax.get_lines()) for ax in fig.axes) == SERIES_PER_PANEL
