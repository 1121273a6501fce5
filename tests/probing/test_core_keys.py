"""entangle.probing.core_keys: the step-record key sets, defined once, and rank_local."""

from __future__ import annotations

import torch

from entangle.probing import core_keys
from entangle.probing import measurements as m
from entangle.runs import keys

PARTS = (m.EAGCCorrected, m.Coordinated, m.FeatureConflict, m.Attribution, m.Energies)
PARTS += (m.ProbeSetResults,)


def test_record_keys_are_the_core_keys_plus_every_parts_and_no_part_clashes():
    assert {keys.STEP, keys.EPOCH, keys.RAW, keys.LOSSES} <= core_keys.CORE_KEYS
    union = set(core_keys.CORE_KEYS)
    for part in PARTS:
        assert part.keys, part.__name__
        assert not (set(part.keys) & union), part.__name__  # one owner per key
        union |= set(part.keys)
    assert core_keys.RECORD_KEYS == union


def test_rank_local_keys_are_record_keys():
    assert set(core_keys.RANK_LOCAL_KEYS) <= core_keys.RECORD_KEYS


def test_rank_local_names_the_rank_local_entries_present(tmp_path):
    store = tmp_path / "store"
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=0, world_size=1
    )
    try:
        record = {keys.STEP: 0, keys.LOSSES: {}, keys.N_LABELED: 3, keys.RAW: {}}
        assert core_keys.rank_local(record) == {
            "rank": 0,
            "world_size": 1,
            "keys": [keys.LOSSES, keys.N_LABELED],
        }
    finally:
        torch.distributed.destroy_process_group()
    assert not torch.distributed.is_initialized()
