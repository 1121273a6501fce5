"""Per-dataset script values against the public scripts, typed here as data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from entangle.gcd.script_values import EAGC_SCRIPTS, SIMGCD_SCRIPTS

# (dataset, script file, --memax_weight) read from CVMI-Lab/SimGCD scripts/run_*.sh at f843f27
SIMGCD = [
    ("cifar10", "run_cifar10.sh", 1),
    ("cifar100", "run_cifar100.sh", 4),
    ("imagenet_100", "run_imagenet100.sh", 1),
    ("imagenet_1k", "run_imagenet1k.sh", 1),
    ("cub", "run_cub.sh", 2),
    ("scars", "run_cars.sh", 1),
    ("aircraft", "run_aircraft.sh", 1),
    ("herbarium_19", "run_herb19.sh", 1),
]
# (dataset, file, --memax_weight, --eep_weight, --reference_epochs, --reference_batch_size)
# read from HaiyangZheng/EAGC scripts/SimGCD/train_*.sh at 87af6ff
EAGC = [
    ("cifar100", "train_cifar100.sh", 2, 0.5, 3, 128),
    ("imagenet_100", "train_imagenet100.sh", 1, 0.5, 30, 128),
    ("cub", "train_cub.sh", 1, 0.5, 30, 32),
    ("scars", "train_scars.sh", 1, 3.0, 30, 32),
    ("aircraft", "train_aircraft.sh", 1, 3.0, 30, 32),
    ("herbarium_19", "train_herb19.sh", 1, 0.5, 30, 32),
]
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.mark.parametrize(("name", "script", "memax"), SIMGCD)
def test_simgcd_script_values(name, script, memax):
    entry = SIMGCD_SCRIPTS[name]
    assert entry.memax_weight == memax
    assert entry.source.endswith(f"scripts/run_{script[4:]}")
    assert (entry.epochs, entry.batch_size, entry.lr, entry.sup_weight) == (200, 128, 0.1, 0.35)


@pytest.mark.parametrize(("name", "script", "memax", "beta", "ref_epochs", "ref_batch"), EAGC)
def test_eagc_script_values(name, script, memax, beta, ref_epochs, ref_batch):
    entry = EAGC_SCRIPTS[name]
    assert entry.source.endswith(f"scripts/SimGCD/{script}")
    got = (entry.memax_weight, entry.eep_weight, entry.reference_epochs)
    assert got == (memax, beta, ref_epochs)
    assert entry.reference_batch_size == ref_batch
    assert (entry.aga_weight, entry.aperture, entry.reference_lr) == (0.7, 2.0, 0.02)


def test_protocol_doc_tables_match_the_data():
    text = DOC.read_text()
    for name, script, memax in SIMGCD:
        assert re.search(rf"\| {name} \| `{script}` \| {memax} \|", text), name
    for name, script, memax, beta, ref_epochs, ref_batch in EAGC:
        row = rf"\| {name} \| `{script}` \| {memax} \| {beta} \| {ref_epochs} \| {ref_batch} \|"
        assert re.search(row, text), name
