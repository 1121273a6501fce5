"""A SimGCD-family run's whole output folder: log.txt, TensorBoard files and checkpoints/.

Needs tensorboard to write and read the event files (the extras env: ``-m extras``).
"""

from __future__ import annotations

import json

import pytest

from entangle.logs import import_log
from entangle.runs.directory import RunReader
from tests.logs.log_samples import SIMGCD_LOG

pytestmark = pytest.mark.extras

# The layout, as data: CVMI-Lab/SimGCD util/general_utils.py init_experiment makes
# exp_root/<runner>/log/<exp_name>_(dd.mm.yyyy_|_SS.fff)/ with logger.add(log_dir/'log.txt')
# and checkpoints/model.pt; the original GCD code's init_experiment (sgvaze/generalized-
# category-discovery project_utils/general_utils.py) adds args.writer =
# SummaryWriter(log_dir=log_dir) in the same folder, and its log_accs_from_preds
# (project_utils/cluster_and_log_utils.py) calls writer.add_scalars(f'{save_name}_{v}',
# {'Old': old, 'New': new, 'All': all}, T), i.e. one sub-folder per key.
RUN_FOLDER = "simgcd/log/cub_(05.03.2024_|_11.532)"
TEXT_LOG = "log.txt"
CHECKPOINT = "checkpoints/model.pt"
ADD_SCALARS_FOLDERS = [f"Train ACC Unlabelled_v2_{k}" for k in ("Old", "New", "All")]
# SIMGCD_LOG's evaluations (Train Accuracies lines, protocol v2), epoch -> (all, old, new)
TEXT_ACC = {0: (0.3120, 0.4010, 0.2671), 1: (0.4002, 0.5120, 0.3440)}
BATCHES = 46  # SIMGCD_LOG's 'Epoch: [E][B/46]'


def write_events(log_dir, shift=0.0):
    """What a GCD-family writer logs into log_dir: add_scalar('Loss' / 'LR', .., epoch) as
    contrastive_training.py does, the accuracies through add_scalars (full precision; the
    text log prints 4 decimals), and a per-iteration series at the global step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for epoch, (a, o, n) in TEXT_ACC.items():
        writer.add_scalar("Loss", 6.8 - epoch, epoch)
        writer.add_scalar("LR", 0.1 / (epoch + 1), epoch)
        accs = {"Old": o + 1e-5 + shift, "New": n - 1e-5, "All": a + 2e-5}
        writer.add_scalars("Train ACC Unlabelled_v2", accs, epoch)
        for batch in range(0, BATCHES, 5):
            writer.add_scalar("train/grad_norm", 1.0 + batch, epoch * BATCHES + batch)
    writer.close()


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / RUN_FOLDER
    (folder / "checkpoints").mkdir(parents=True)
    (folder / TEXT_LOG).write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    (folder / CHECKPOINT).write_bytes(b"not read by import-log")
    write_events(folder)
    return folder


def _records(run):
    reader = RunReader(run)
    return reader.epochs, reader.steps


def test_log_and_event_files_of_one_folder_import_as_one_run(run_folder, tmp_path):
    result = import_log([run_folder], tmp_path / "run")
    assert result.kind == "text+tensorboard" and result.epochs == 2
    assert not any("disagree" in n for n in result.notes)
    epochs, steps = _records(tmp_path / "run")
    for rec in epochs:  # evaluations: the text log's numbers, checked against TensorBoard's
        assert (rec["acc_all"], rec["acc_old"], rec["acc_new"]) == TEXT_ACC[rec["epoch"]]
        assert rec["acc_source"] == "text"
        assert rec["scalars"]["Loss"] == pytest.approx(6.8 - rec["epoch"])
        assert rec["scalars"]["Train ACC Unlabelled_v2/Old"] == pytest.approx(
            TEXT_ACC[rec["epoch"]][1] + 1e-5
        )
    by_step = {s["step"]: s for s in steps}
    # the text log's step lines (epoch x 46 + batch) keep their losses; the per-iteration
    # series lands on the same axis, in the same record where both have the step
    assert by_step[10]["log_losses"]["cls_loss"] == 3.9001
    assert by_step[10]["scalars"] == {"train/grad_norm": 11.0}
    assert by_step[BATCHES + 45]["scalars"] == {"train/grad_norm": 46.0}
    assert "train/grad_norm" not in epochs[0].get("scalars", {})


def test_a_disagreeing_evaluation_is_named(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / TEXT_LOG).write_text(SIMGCD_LOG + "\n", encoding="utf-8")
    write_events(other, shift=0.01)
    result = import_log([other], tmp_path / "run")
    (note,) = [n for n in result.notes if "disagree (" in n]
    assert "2 of 2 evaluations" in note and "epoch 0 v2" in note and "epoch 1 v2" in note


def _folder(f):
    return [f]


def _sub_folders(f):
    return [f / TEXT_LOG, *(f / d for d in ADD_SCALARS_FOLDERS), *f.glob("events.out.*")]


def _files(f):
    return [f / TEXT_LOG, *f.rglob("events.out.tfevents.*")]


def _only_events_folder(f):
    return [f / d for d in ADD_SCALARS_FOLDERS] + list(f.glob("events.out.*"))


@pytest.mark.parametrize("given", [_sub_folders, _files])
def test_sub_folders_or_files_one_by_one_give_the_same_run(run_folder, tmp_path, given):
    import_log(_folder(run_folder), tmp_path / "whole")
    result = import_log(given(run_folder), tmp_path / "parts")
    assert result.kind == "text+tensorboard"
    assert json.dumps(_records(tmp_path / "parts")) == json.dumps(_records(tmp_path / "whole"))


def test_event_files_alone_one_by_one_keep_all_old_new_apart(run_folder, tmp_path):
    events = sorted(run_folder.rglob("events.out.tfevents.*"))
    assert len(events) == 4  # the writer's own file and one per add_scalars key
    import_log(events, tmp_path / "files")
    import_log(_only_events_folder(run_folder), tmp_path / "folders")
    epochs, _ = _records(tmp_path / "files")
    assert len(epochs) == 2 and epochs[1]["acc_old"] == pytest.approx(0.5120 + 1e-5)
    assert epochs[1]["acc_new"] == pytest.approx(0.3440 - 1e-5)
    assert json.dumps(_records(tmp_path / "files")) == json.dumps(_records(tmp_path / "folders"))
