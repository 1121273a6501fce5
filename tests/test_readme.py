"""README's loop snippet runs as written, on tiny data, and fills every report section."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.support.report_check import report_gaps
from tests.support.toy import ToyBackbone

README = Path(__file__).resolve().parents[1] / "README.md"


def loop_snippet() -> str:
    """The python block under "## Use it in your loop"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use it in your loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def stand_ins(seed: int = 0) -> dict:
    """What the snippet expects the user to have: models, loaders, losses, optimiser."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    classes, old = 4, 2
    centres = 2.0 * torch.randn(classes, 6, generator=g)
    y = torch.randint(0, classes, (256,), generator=g)
    x = centres[y] + 0.7 * torch.randn(256, 6, generator=g)
    labeled = (y < old) & (torch.rand(256, generator=g) < 0.5)

    backbone = ToyBackbone(width=32, dim=32)
    backbone.stem.requires_grad_(False)
    backbone.blocks[:2].requires_grad_(False)  # last block + pool train
    reference_backbone = copy.deepcopy(backbone).requires_grad_(False)
    head = torch.nn.Linear(32, classes)
    params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]

    def my_losses(logits, labels, labeled):
        sup = torch.nn.functional.cross_entropy(logits[labeled] / 0.1, labels[labeled])
        p = (logits / 0.1).softmax(1)
        unsup = -(p * p.clamp_min(1e-12).log()).sum(1).mean() + (p.mean(0) * p.mean(0).log()).sum()
        return sup, unsup

    batches = [(x[r], y[r], labeled[r]) for r in torch.arange(256).split(32)]
    return {
        "backbone": backbone,
        "reference_backbone": reference_backbone,
        "head": head,
        "labeled_loader": [
            (x[labeled][r], y[labeled][r]) for r in torch.arange(int(labeled.sum())).split(32)
        ],
        "loader": batches,
        "eval_loader": [(xb, yb, None, lb[:, None]) for xb, yb, lb in batches],
        "num_old_classes": old,
        "probe_x": x[:128],
        "probe_labeled": labeled[:128],
        "probe_novel": y[:128] >= old,
        "epochs": 2,
        "my_losses": my_losses,
        "optimizer": torch.optim.SGD(params, lr=0.05),
    }


@pytest.mark.slow
def test_readme_loop_runs_and_fills_every_report_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = stand_ins()
    exec(compile(loop_snippet(), str(README), "exec"), namespace)
    run = tmp_path / "runs" / "simgcd-eagc"
    assert (run / "DONE").exists()
    # config, seed and device are recorded by the Probe itself (issue 22: were only via RunWriter)
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert meta["config"]["epochs"] == 2 and meta["seed"] == 0 and meta["device"] == "cpu"
    assert report_gaps([run], tmp_path / "report", monkeypatch) == []
    # the check can fail: the same run without its saved features leaves sections empty
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    shutil.rmtree(bare / "features")
    gaps = report_gaps([bare], tmp_path / "report-bare", monkeypatch)
    assert "missing figure energy_ratio" in gaps
