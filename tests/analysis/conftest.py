"""A saved digits checkpoint and one analysis of it, shared by the tests of tests/analysis."""

from __future__ import annotations

import pytest

from entangle.analysis import AnalyzeConfig, analyze
from entangle.checkpoints import save_checkpoint
from tests.analysis.digits import SMALL, digits_models


@pytest.fixture(scope="package")
def digits_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    save_checkpoint(path, *digits_models(), meta={"epoch": 3})
    return path


@pytest.fixture(scope="package")
def digits_run(digits_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    config = AnalyzeConfig(**(SMALL | {"tsne": True}))
    return analyze([digits_ckpt], out, config), config
