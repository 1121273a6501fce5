"""TensorBoard event files written by torch.utils.tensorboard, read back scalar by scalar."""

from __future__ import annotations

import pytest

from entangle.logs import import_log
from entangle.logs.tensorboard_in import read_event_files, series_name
from entangle.runs.directory import RunReader

pytestmark = pytest.mark.extras


def write_gcd_style_events(logdir):
    """What the original GCD code logs (sgvaze/generalized-category-discovery
    methods/contrastive_training/contrastive_training.py: add_scalar 'Loss', 'Train Acc
    Labelled Data', 'LR' per epoch; project_utils/cluster_and_log_utils.py: add_scalars
    f'{save_name}_{v}' with keys 'Old', 'New', 'All' per epoch), plus a histogram."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    for epoch in range(3):
        writer.add_scalar("Loss", 5.0 - epoch, epoch)
        writer.add_scalar("Train Acc Labelled Data", 0.2 + 0.1 * epoch, epoch)
        writer.add_scalar("LR", 0.1 / (epoch + 1), epoch, new_style=True)  # a tensor value
        for v, shift in (("v1", 0.05), ("v2", 0.0)):
            accs = {"Old": 0.5 + shift + 0.1 * epoch, "New": 0.3 + shift, "All": 0.4 + shift}
            writer.add_scalars(f"Train ACC Unlabelled_{v}", accs, epoch)
        writer.add_scalars("Test ACC_v1", {"Old": 0.6, "New": 0.2, "All": 0.4}, epoch)
        writer.add_histogram("weights", torch.arange(10.0), epoch)
    writer.close()


def test_every_scalar_tag_is_read(tmp_path):
    write_gcd_style_events(tmp_path / "tb")
    from entangle.logs.tensorboard_in import find_event_files

    log = read_event_files(find_event_files(tmp_path / "tb"), tmp_path / "tb")
    assert set(log.series) == {
        "Loss",
        "Train Acc Labelled Data",
        "LR",
        *(f"Train ACC Unlabelled_{v}/{k}" for v in ("v1", "v2") for k in ("Old", "New", "All")),
        *(f"Test ACC_v1/{k}" for k in ("Old", "New", "All")),
    }
    assert [(s, v) for s, _, v in log.series["Loss"]] == [(0, 5.0), (1, 4.0), (2, 3.0)]
    assert [v for _, _, v in log.series["LR"]] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert log.skipped == {"weights": 3}  # the histogram is reported, not read as a scalar


def test_event_folder_becomes_a_run_with_accuracy_epochs(tmp_path):
    write_gcd_style_events(tmp_path / "tb")
    result = import_log([tmp_path / "tb"], tmp_path / "run")
    assert result.kind == "tensorboard" and result.epochs == 3 and result.steps == 3
    assert any("weights (3)" in n for n in result.notes)
    reader = RunReader(tmp_path / "run")
    e2 = reader.epochs[2]
    assert e2["acc_protocol"] == "v2"  # v2 preferred when several were logged
    assert e2["acc_old"] == pytest.approx(0.7)
    assert e2["acc_protocols"]["v1"]["old"] == pytest.approx(0.75)
    assert e2["logged_acc"]["Test ACC"]["v1"]["new"] == pytest.approx(0.2)
    assert reader.steps[1]["scalars"]["Loss"] == 4.0
    assert len(reader.steps[1]["scalars"]) == 12
    assert reader.config["parse"]["skipped"] == {"weights": 3}


def test_series_names_follow_add_scalars_folders():
    assert series_name("acc", ".") == "acc"
    assert series_name("acc", "acc_Old") == "acc/Old"
    assert series_name("a/b", "a_b_New") == "a/b/New"
    assert series_name("Loss", "run2") == "run2/Loss"
    assert series_name("acc", "run2/acc_All") == "run2/acc/All"
