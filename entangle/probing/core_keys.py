"""The keys of a Probe's step record: the core's own, every part's, and the rank-local ones.

Defined once here and read by the Probe, the docs test and the DDP tests (docs/records.md).
"""

from __future__ import annotations

import torch

from entangle.nn.distributed import world_size
from entangle.probing.measurements import (
    Attribution,
    Coordinated,
    EAGCCorrected,
    Energies,
    FeatureConflict,
    ProbeSetResults,
)
from entangle.runs import keys as record_keys

# the core's own step-record keys; every part adds its own (docs/records.md)
CORE_KEYS = frozenset(
    {
        record_keys.STEP,
        record_keys.EPOCH,
        record_keys.LOSSES,
        record_keys.RAW,
        record_keys.N_LABELED,
        record_keys.NAN,
        record_keys.RANK_LOCAL,
    }
)
# every top-level key a step record of the probe can hold (docs/records.md)
RECORD_KEYS = CORE_KEYS.union(
    EAGCCorrected.keys,
    Coordinated.keys,
    FeatureConflict.keys,
    Attribution.keys,
    Energies.keys,
    ProbeSetResults.keys,
)
# entries computed from this rank's rows alone under DDP (named in the record's rank_local)
RANK_LOCAL_KEYS = (
    record_keys.LOSSES,
    record_keys.FEATURE,
    record_keys.FEATURE_EAGC,
    record_keys.ENERGY,
    record_keys.N_LABELED,
)


def rank_local(record: dict) -> dict:
    """The record's ``rank_local`` entry under DDP: which of its entries are this rank's alone.

    Gradient metrics are of the all-reduced (global) gradients; these entries are of this
    rank's rows only, and the record says so (docs/records.md).
    """
    return {
        "rank": torch.distributed.get_rank(),
        "world_size": world_size(),
        "keys": [k for k in RANK_LOCAL_KEYS if k in record],
    }
