"""examples/simgcd_style.py runs on tiny images and fills every report section; its diff
against the plain loop is what docs/simgcd-guide.md says."""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path

import pytest

from tests.support.report_check import report_gaps

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "simgcd-guide.md"


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return lambda name: importlib.import_module(name)


def train_diff() -> tuple[int, int]:
    """Lines added and removed in ``train()`` from simgcd_plain.py to simgcd_style.py."""

    def body(path):
        lines = path.read_text(encoding="utf-8").splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("def train("))
        end = next(i for i, line in enumerate(lines) if line.startswith("if __name__"))
        return lines[start:end]

    diff = difflib.unified_diff(
        body(EXAMPLES / "simgcd_plain.py"), body(EXAMPLES / "simgcd_style.py"), n=0, lineterm=""
    )
    changed = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
    return sum(c.startswith("+") for c in changed), sum(c.startswith("-") for c in changed)


def test_the_guide_states_the_real_diff_size():
    added, removed = train_diff()
    stated = re.search(r"adds (\d+) lines and removes (\d+)", GUIDE.read_text(encoding="utf-8"))
    assert stated, "docs/simgcd-guide.md must state the diff size"
    assert (int(stated.group(1)), int(stated.group(2))) == (added, removed)


@pytest.mark.slow
def test_example_fills_every_report_section(tmp_path, monkeypatch, examples):
    style = examples("simgcd_style")
    common = examples("simgcd_common")
    out = style.train(
        common.parse_args(["--out", str(tmp_path / "run"), "--backbone", "builtin", "--cpu"])
    )
    assert (out / "DONE").exists()
    # the example also attributes the conflict to classes: that section is filled too
    assert report_gaps([out], tmp_path / "report", monkeypatch, ["class_attribution"]) == []


@pytest.mark.slow
def test_plain_loop_trains(examples):
    plain = examples("simgcd_plain")
    common = examples("simgcd_common")
    accuracies = plain.train(common.parse_args(["--epochs", "1", "--backbone", "builtin", "--cpu"]))
    assert len(accuracies) == 1 and all(0.0 <= a <= 1.0 for a in accuracies[0])


@pytest.mark.extras
def test_example_with_a_timm_vit_and_tensorboard(tmp_path, monkeypatch, examples):
    pytest.importorskip("timm")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    style = examples("simgcd_style")
    common = examples("simgcd_common")
    args = common.parse_args(
        [
            "--out",
            str(tmp_path / "run"),
            "--backbone",
            "timm",
            "--cpu",
            "--epochs",
            "2",
            "--tensorboard",
            str(tmp_path / "tb"),
        ]
    )
    out = style.train(args)
    # the example also attributes the conflict to classes: that section is filled too
    assert report_gaps([out], tmp_path / "report", monkeypatch, ["class_attribution"]) == []
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"raw/last_block/gdc", "eagc/last_block/cos", "probeset/soc", "epoch/acc_all"} <= tags
