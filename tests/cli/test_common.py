"""The CLI's shared display: user text shown literally, a bar only on a terminal, the stage
columns' text for counted and uncounted stages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from entangle.cli import common


def _task(total=10, speed=None, finished=False, **fields):
    return SimpleNamespace(
        total=total,
        completed=3,
        speed=speed,
        finished_speed=None,
        finished=finished,
        fields=fields,
        elapsed=1.0,
        time_remaining=None,
    )


def test_user_text_is_shown_verbatim():
    text = common.literal("exp:smile: [red]x[/red] __main__:train:1")
    assert text.plain == "exp:smile: [red]x[/red] __main__:train:1" and text.spans == []


def test_a_bar_is_drawn_only_on_a_terminal_without_quiet(monkeypatch):
    monkeypatch.setattr(type(common.err_console), "is_terminal", property(lambda self: True))
    assert common.progress_shown() and not common.progress_shown(quiet=True)
    monkeypatch.setattr(type(common.err_console), "is_terminal", property(lambda self: False))
    assert not common.progress_shown()


@pytest.mark.parametrize(
    ("task", "shown"),
    [
        (_task(speed=None), "? it/s"),
        (_task(speed=None, finished=True), ""),
        (_task(speed=4.0), "4.0 it/s"),
        (_task(speed=0.25), "4.0 s/it"),
        (_task(speed=2.0, images_per_step=1024), "2,048 img/s"),
        (_task(total=None, speed=3.0), ""),
    ],
)
def test_the_rate_column(task, shown):
    assert common.RateColumn().render(task).plain == shown


def test_uncounted_stages_show_no_count_and_no_eta():
    assert common.CountColumn().render(_task(total=None)).plain == ""
    assert common.EtaColumn().render(_task(total=None)).plain == ""
    assert common.CountColumn().render(_task()).plain.strip() == "3/10"
    assert common.EtaColumn().render(_task()).plain.startswith("eta ")
    note = common.NoteColumn().render(_task(note="loss 0.123"))
    assert note.plain == "loss 0.123" and note.no_wrap


def test_stage_progress_adds_one_task_per_stage_and_updates_it(monkeypatch):
    monkeypatch.setattr(common, "progress_shown", lambda quiet=False: False)
    with common.stage_progress() as report:
        report("pretrain", 1, 4, "loss 1.0")
        report("pretrain", 3, 4, "loss 0.5")
        report("train", 2, 10, images_per_step=64)
        tasks = {t.description: t for t in report.progress.tasks}
    assert list(tasks) == ["pretrain", "train"] and report.shown is False
    assert (tasks["pretrain"].completed, tasks["pretrain"].fields["note"]) == (3, "loss 0.5")
    assert tasks["train"].fields["images_per_step"] == 64 and tasks["train"].total == 10
