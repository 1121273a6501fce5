import math

import pytest

from entangle.cli import train_display
from entangle.cli.train_display import TrainDisplay, epoch_lines, progress_evaluation


class Bar:
    """A stand-in for stage_progress's callback: records each draw and each printed line."""

    shown = True

    def __init__(self):
        self.draws, self.lines = [], []

    def __call__(self, stage, done, total, note="", images_per_step=0):
        self.draws.append((stage, done, total, note, images_per_step))

    def print(self, line, **kwargs):
        self.lines.append(str(line))


def test_the_bar_shows_images_per_step_the_loss_then_the_last_accuracy(monkeypatch):
    clock = iter([10.0, 10.1, 12.0, 13.0])
    monkeypatch.setattr(train_display.time, "monotonic", lambda: next(clock))
    bar = Bar()
    view = TrainDisplay(bar, "train eagc", epochs=2, refresh_s=0.5, images_per_step=64)
    view.step(1, 8, 1.5)
    assert bar.draws[-1] == ("train eagc", 1, 8, "loss 1.5000", 64)
    view.step(2, 8, 9.0)  # 0.1 s later: the note is not re-read (no GPU sync)
    assert bar.draws[-1][3] == "loss 1.5000"
    record = {"acc_all": 0.5234, "acc_old": 0.6, "acc_new": 0.4, "peak_gpu_memory_mib": 3072}
    view.epoch(0, record)
    view.step(3, 8, 1.0)
    assert bar.draws[-1][3] == "loss 1.0000 All 0.523 3.0GiB"
    assert bar.lines[1].startswith("Epoch 0, Train ACC Unlabelled_v2: All 0.5234")


def test_the_rate_column_turns_steps_into_images_per_second():
    from rich.progress import Progress

    from entangle.cli.common import RateColumn

    progress = Progress()
    task_id = progress.add_task("train", total=10, images_per_step=256)
    task = progress.tasks[0]
    task.finished_speed = 2.0  # steps/s
    assert RateColumn().render(task).plain == "512 img/s"
    task.fields["images_per_step"] = 0
    assert RateColumn().render(task).plain == "2.0 it/s"
    assert task_id == task.id


@pytest.mark.parametrize("peak", [None, math.nan])
def test_a_cpu_run_has_no_peak_memory_in_the_note(peak):
    note = progress_evaluation({"acc_all": 0.25, "peak_gpu_memory_mib": peak})
    assert note == " All 0.250"


def test_epoch_lines_keep_simgcd_wording_and_say_nan_for_missing_accuracy():
    loss, accuracy = epoch_lines(2, 5, 0.75, {"acc_all": 0.5, "acc_old": None})
    assert loss == "Train Epoch: 2 Avg Loss: 0.7500 (epoch 3 of 5)"
    assert accuracy == "Epoch 2, Train ACC Unlabelled_v2: All 0.5000 | Old nan | New nan"


@pytest.mark.parametrize(
    "note", ["loss 5.9987", "loss 5.9987 All 0.488", "loss 5.99 All 0.488 3.0GiB"]
)
def test_a_training_bar_stays_on_one_80_column_line(note):
    import io

    from rich.console import Console
    from rich.progress import Progress

    from entangle.cli.common import progress_columns

    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    progress = Progress(*progress_columns(), console=console, auto_refresh=False)
    progress.add_task("train eagc_shared", total=1600, note=note, images_per_step=256)
    progress.update(progress.tasks[0].id, completed=800)
    progress.tasks[0].finished_speed = 3.2
    console.print(progress.make_tasks_table(progress.tasks))
    (line,) = out.getvalue().splitlines()  # one line, whatever the note
    assert "800/1600" in line and "819 img/s" in line and "eta" in line
    assert line.split("eta")[1].split()[1] == "loss"  # the note starts, then may be cut
