"""The live Probe's TensorBoard sink writes the per-class attribution the export writes."""

from __future__ import annotations

import math

import pytest

from entangle import RunReader
from entangle.logs.tensorboard_out import export_run
from tests.support.toy import attributed_toy_run

# "/" inside a class name would open a TensorBoard sub-section: written "_"
CLASS_NAMES = ["cat", "dog/wolf", "owl", "newt"]


def _read(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _attributed(tmp_path, name: str, config: dict | None, steps: int = 3, rows=None):
    """A toy run probed with class attribution on every step, live TensorBoard beside it."""
    tb = tmp_path / f"tb-{name}"
    return attributed_toy_run(
        tmp_path / name, steps=steps, config=config, tensorboard=tb, rows=rows
    )


@pytest.mark.extras
def test_live_sink_writes_per_class_attribution_named_by_the_runs_classes(tmp_path):
    pytest.importorskip("tensorboard")
    run = _attributed(tmp_path, "named", {"class_names": CLASS_NAMES})
    live = _read(tmp_path / "tb-named")
    steps = RunReader(run).steps
    assert len(steps) == 3
    for rec in steps:
        rows = rec["attribution"]["unsup_rows"]
        assert len(rows["class"]) == len(CLASS_NAMES)
        for i, name in enumerate(["cat", "dog_wolf", "owl", "newt"]):
            got = dict(live[f"attribution/unsup_rows/class/{name}"])[rec["step"]]
            assert math.isclose(got, rows["class"][i], rel_tol=1e-6, abs_tol=1e-9), name
            per_row = f"attribution/unsup_rows/class_per_row/{name}"
            if rows["class_rows"][i] > 0:
                want = rows["class"][i] / rows["class_rows"][i]
                assert math.isclose(dict(live[per_row])[rec["step"]], want, rel_tol=1e-6)
            else:  # a class without unlabeled rows in the batch has no per-row mean
                assert rec["step"] not in dict(live.get(per_row, []))
    assert not any(t.startswith("attribution/unsup_rows/class/") and t[-1].isdigit() for t in live)
    # the same series, step for step, as `entangle export tensorboard` of the finished run
    export_run(run, tmp_path / "exported")
    exported = _read(tmp_path / "exported")
    per_class = sorted(t for t in exported if "/class" in t)
    assert per_class and per_class == sorted(t for t in live if "/class" in t)
    for tag in per_class:
        assert [s for s, _ in live[tag]] == [s for s, _ in exported[tag]], tag
        for (_, a), (_, b) in zip(live[tag], exported[tag], strict=True):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), tag


@pytest.mark.extras
def test_without_class_names_the_series_are_class_indices(tmp_path):
    pytest.importorskip("tensorboard")
    _attributed(tmp_path, "bare", None, steps=1)
    live = _read(tmp_path / "tb-bare")
    tags = sorted(t for t in live if t.startswith("attribution/unsup_rows/class/"))
    assert tags == [f"attribution/unsup_rows/class/{i}" for i in range(4)]


def _texts(log_dir) -> dict[str, list[tuple[int, str]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if tag.endswith("/text_summary"):
            events = acc.Tensors(tag)
            out[tag.removesuffix("/text_summary")] = [
                (e.step, e.tensor_proto.string_val[0].decode()) for e in events
            ]
    return out


@pytest.mark.extras
def test_a_subsampled_attribution_says_so_and_a_full_one_keeps_its_tags(tmp_path):
    """The sums of a subsample cover its rows only: a text summary says which (live and
    exported), the overlay category is marked; a full-set run writes neither."""
    pytest.importorskip("tensorboard")
    from entangle.probing.tensorboard import SUBSAMPLE_TEXT_TAG, overlay_layout

    full = _attributed(tmp_path, "full", None, steps=2)
    sub = _attributed(tmp_path, "sub", None, steps=2, rows=5)
    assert all(s["attribution"]["subsample"]["rows"] == 5 for s in RunReader(sub).steps)
    want = "Attribution over a subsample: 5 of 16 rows per attributed step (seeded by step)"
    export_run(sub, tmp_path / "exported-sub")
    for log_dir in (tmp_path / "tb-sub", tmp_path / "exported-sub"):
        (text,) = _texts(log_dir)[SUBSAMPLE_TEXT_TAG]  # once: the rows did not change
        assert text[0] == 0 and text[1].startswith(want), text
        assert "attribution_eagc/" in text[1]
    assert _texts(tmp_path / "tb-full") == {}
    live_full, live_sub = _read(tmp_path / "tb-full"), _read(tmp_path / "tb-sub")
    # the sums keep their tags; the subsample adds only its own rows/of/seed series
    assert set(live_sub) - set(live_full) == {
        f"attribution/subsample/{key}" for key in ("rows", "of", "seed")
    }
    assert not any("subsample" in t for t in live_full)
    assert dict(live_sub["attribution/subsample/of"]) == {0: 16.0, 1: 16.0}
    assert "attribution raw vs EAGC (row subsample)" in overlay_layout(
        {*live_sub, "attribution_eagc/unsup_rows/sum"}
    )
    full_layout = overlay_layout({*live_full, "attribution_eagc/unsup_rows/sum"})
    assert "attribution raw vs EAGC" in full_layout
    assert not any("subsample" in c for c in full_layout)
    export_run(full, tmp_path / "exported-full")
    assert _texts(tmp_path / "exported-full") == {}
