"""The layout registry: each layout detected, an unplaceable file named with the formats tried,
the CLI's --list-formats."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from entangle.checkpoints import (
    CheckpointError,
    detect_format,
    load_gcd_object,
)
from tests.checkpoints.models import prefixed


def test_detect_format_names_each_layout(vit, head):
    bb, hd = vit.state_dict(), head.state_dict()
    assert detect_format({"entangle_checkpoint": 1, "backbone": bb, "head": hd}) == "entangle"
    sg = {**prefixed(bb, "0."), **prefixed(hd, "1.")}
    assert detect_format({"model": sg, "epoch": 2}) == "simgcd"
    assert detect_format({"model": prefixed(sg, "module.")}) == "simgcd"
    assert detect_format({"backbone_state_dict": bb, "projector_state_dict": hd}) == "eagc"
    assert (
        detect_format(
            {"backbone_state_dict": bb, "projector_state_dict": hd, "mlp_head_state_dict": {}}
        )
        == "selex"
    )
    assert detect_format(bb) == "vit"
    assert detect_format({"teacher": prefixed(bb, "backbone.")}) == "dino"


def test_detect_format_rejects_unknown_layouts():
    with pytest.raises(CheckpointError, match=r"unrecognised.*encoder.*--model"):
        detect_format({"encoder": {"w": torch.ones(1)}, "step": 3})
    with pytest.raises(CheckpointError, match="pickled whole model"):
        detect_format(nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="version 2"):
        load_gcd_object({"entangle_checkpoint": 2})


def test_unplaceable_checkpoint_names_keys_and_formats_tried():
    with pytest.raises(CheckpointError) as info:
        detect_format({"encoder": {"w": torch.ones(1)}, "step": 3})
    message = str(info.value)
    assert "\n" not in message
    assert "top-level keys: encoder, step" in message
    assert (
        "tried the formats entangle, selex, eagc, get, simgcd, sptnet, cms, dino, dinov2, vit"
        in message
    )


def test_cli_lists_formats_and_unplaceable_file_exits_2(tmp_path):
    import subprocess
    import sys

    from entangle.cli.app import app

    result = CliRunner().invoke(app, ["analyze", "--list-formats"])
    assert result.exit_code == 0, result.output
    for name in ("entangle", "simgcd", "sptnet", "eagc", "selex", "cms", "dino", "dinov2", "vit"):
        assert name in result.output
    assert "SimGCD, LegoGCD" in result.output and "InfoSieve" in result.output
    torch.save({"encoder": {"w": torch.ones(1)}}, tmp_path / "odd.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from entangle.cli.app import main; main()",
            "analyze",
            str(tmp_path / "odd.pt"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "top-level keys: encoder" in proc.stderr and "tried the formats" in proc.stderr
