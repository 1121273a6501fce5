"""Record keys defined once: documented, written by the DONE summary, read back by the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from entangle.ablation.results import cell_row
from entangle.ablation.spec import Cell
from entangle.gcd.config import TrainConfig
from entangle.gcd.evaluate import run_summary
from entangle.probing.tensorboard import SKIPPED_KEYS, record_scalars
from entangle.runs import keys
from entangle.runs.directory import RunReader, RunWriter

RECORDS_MD = Path(__file__).parents[2] / "docs" / "records.md"
# the two windows are fragments of DONE keys (done_gdc), not keys of their own
FRAGMENTS = {"EARLY", "MEAN"}


def _constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, str) and name not in FRAGMENTS
    }


def test_every_key_is_a_documented_record_key():
    documented = set(re.findall(r"`([a-z_]+)`", RECORDS_MD.read_text(encoding="utf-8")))
    derived = {keys.done_gdc(w, k) for w in (keys.EARLY, keys.MEAN) for k in (keys.RAW,)}
    derived |= {keys.done_gdc(w, k) for w in (keys.EARLY, keys.MEAN) for k in keys.APPLIED_KINDS}
    derived |= {keys.done_cos_mean(k) for k in (keys.RAW, *keys.APPLIED_KINDS)}
    missing = sorted(set(_constants().values()) - documented) + sorted(derived - documented)
    assert missing == []


def _run(tmp_path, kind: str | None) -> Path:
    """A finished run: 3 probed steps (raw and, with ``kind``, the applied update), 1 epoch."""
    path = tmp_path / f"run-{kind}"
    with RunWriter(path) as run:
        for step in range(3):
            record = {
                keys.STEP: step,
                keys.RAW: {keys.LAST_BLOCK: {keys.COS: -0.5 + step, keys.GDC: 0.4 + step}},
                keys.PROBESET: {keys.SOC: 0.3 + step},
            }
            if kind is not None:
                record[kind] = {keys.LAST_BLOCK: {keys.COS: 0.1, keys.GDC: 0.2 + step}}
            run.write_step(record)
        run.write_epoch({keys.EPOCH: 0, keys.STEP: 3, keys.ACC_ALL: 0.9, keys.SOC: 0.55})
        run.finish(run_summary(RunReader(path)))
    return path


@pytest.mark.parametrize("kind", [None, keys.EAGC, keys.COORDINATED])
def test_the_ablation_table_reads_what_the_done_summary_writes(tmp_path, kind):
    path = _run(tmp_path, kind)
    summary = RunReader(path).summary
    row = cell_row(Cell(name="c", config=TrainConfig(), settings={"variant": "x"}), path)
    applied = kind or keys.RAW
    # the applied GDC is 0.2 + step where recorded; a baseline's applied one is its raw one
    want = 1.2 if kind else 1.4
    assert row["gdc"] == summary[keys.done_gdc(keys.EARLY, applied)] == pytest.approx(want)
    assert row["gdc_raw"] == summary[keys.done_gdc(keys.EARLY)] == pytest.approx(1.4)
    assert row["gdc_all"] == summary[keys.done_gdc(keys.MEAN, applied)]
    assert row["soc"] == summary[keys.SOC_EARLY] == pytest.approx(1.3)
    assert row["soc_last_epoch"] == summary[keys.SOC_LAST_EPOCH] == 0.55
    assert row["acc_all"] == 0.9 and row["cos_mean"] == summary[keys.done_cos_mean()]
    written = {k for k in keys.APPLIED_KINDS if keys.done_gdc(keys.EARLY, k) in summary}
    assert written == ({kind} if kind else set())


def test_tensorboard_skips_the_bookkeeping_keys_of_a_written_epoch_record(tmp_path):
    (epoch,) = RunReader(_run(tmp_path, None)).epochs
    tags = dict(record_scalars(epoch, "epoch"))
    assert tags == {"epoch/acc_all": 0.9, "epoch/soc": 0.55}
    assert {keys.STEP, keys.EPOCH} <= set(epoch) and {keys.STEP, keys.EPOCH} <= SKIPPED_KEYS
