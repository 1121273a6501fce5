"""The summary table's cells and notes for runs without probed steps (report/summary.py)."""

from __future__ import annotations

import math

from entangle.report.summary import gradient_rows_note, summary_cell, summary_metrics

ROWS = {m.key: m for m in summary_metrics(has_eagc=True)}
CHECKPOINT = {"epoch": 7.0, "batches": 8.0, "attached": 1, "gdc_all_raw": 0.431}


def test_a_checkpoint_value_fills_only_an_empty_cell_and_names_its_batches():
    imported = {"gdc_all_raw": math.nan, "probed": False, "checkpoint": CHECKPOINT}
    assert (
        summary_cell(imported, ROWS["gdc_all_raw"])
        == "0.4310 (checkpoint at epoch 7, 8 gradient batches)"
    )
    # a row the checkpoint has no value for stays empty
    assert summary_cell(imported, ROWS["gdc_early_raw"]) == "-"
    # a run's own value is never replaced by a checkpoint's
    own = imported | {"gdc_all_raw": 0.2}
    assert summary_cell(own, ROWS["gdc_all_raw"]) == "0.2000"
    assert summary_cell({"steps": 12}, ROWS["steps"]) == "12"


def test_the_note_says_why_and_what_the_checkpoint_rows_are():
    assert gradient_rows_note({"probed": True}, imported=False, compared=True) is None
    assert gradient_rows_note({}, imported=False, compared=False) is None  # probed by default
    plain = gradient_rows_note({"probed": False, "checkpoint": {}}, imported=True, compared=False)
    assert plain.startswith("no probed training steps (imported from a training log)")
    assert "--attach AN" in plain
    bare = gradient_rows_note({"probed": False}, imported=False, compared=False)
    assert "written without a Probe" in bare and "--attach" not in bare
    several = CHECKPOINT | {"attached": 3}
    note = gradient_rows_note({"probed": False, "checkpoint": several}, True, compared=True)
    assert "the 8 gradient batches" in note and "checkpoint of epoch 7" in note
    assert "not over training steps" in note and "the last of 3 attached checkpoints" in note
    assert note.endswith("the comparison table leaves them out (not training steps)")
    single = gradient_rows_note({"probed": False, "checkpoint": CHECKPOINT}, True, False)
    assert "comparison" not in single and "attached checkpoints" not in single
