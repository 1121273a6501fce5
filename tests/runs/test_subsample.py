"""entangle.runs.subsample: what a row-subsampled attribution covered, from step records."""

from __future__ import annotations

from types import SimpleNamespace

from entangle.report.load import load_runs
from entangle.runs.directory import RunWriter
from entangle.runs.subsample import (
    run_subsample,
    runs_subsample_words,
    subsample_label,
    subsample_words,
)


def test_label_spans_the_rows_and_batch_sizes_of_its_entries():
    assert subsample_label([{"rows": 8, "of": 64}]) == "8 of 64"
    assert subsample_label([{"rows": 8, "of": 64}, {"rows": 6, "of": 48}]) == "6-8 of 48-64"
    assert subsample_label([{"rows": "x"}]) == "? of ?"  # a hostile entry reads as unknown
    assert subsample_words("8 of 64") == (
        "attribution over a subsample: 8 of 64 rows per attributed step (seeded by step)"
    )


def test_a_run_attributing_every_row_has_no_subsample():
    steps = [{"attribution": {"unsup_rows": {"class": [0.1]}}}, {"step": 3}]
    assert run_subsample(SimpleNamespace(steps=steps)) is None


def test_a_set_of_runs_says_one_label_when_they_agree_and_each_run_when_not():
    def run(name, rows):
        entry = {"unsup_rows": {"class": [0.1]}}
        if rows:
            entry["subsample"] = {"rows": rows, "of": 16}
        return SimpleNamespace(name=name, steps=[{"attribution": entry}])

    assert runs_subsample_words([run("a", 0), run("b", 0)]) == ""
    assert runs_subsample_words([run("a", 4), run("b", 4)]) == subsample_words("4 of 16")
    assert runs_subsample_words([run("a", 4), run("b", 0)], sep=", ") == (
        "attribution over a subsample of rows per attributed step (seeded by step) "
        "(a: 4 of 16, b: every row)"
    )


def test_partly_subsampled_run_says_on_how_many_steps(tmp_path):
    with RunWriter(tmp_path / "r", config={"data": "synthetic"}) as w:
        for step in range(3):
            entry = {"unsup_rows": {"class": [0.1, -0.2], "class_rows": [1.0, 1.0]}}
            if step:
                entry["subsample"] = {"rows": 4 + step, "of": 32, "batch_rows": [], "seed": step}
            w.write_step({"step": step, "attribution": entry})
        w.finish({})
    (run,) = load_runs([tmp_path / "r"])
    assert run_subsample(run) == ("5-6 of 32 (on 2 of 3 attributed steps, every row on the rest)")
