"""Shared starting weights: every cell with the same data/model/seed starts from one file.

Cells of one grid may run in different processes or on different machines, so the prepared
``Setup`` (pretrained backbone + fresh head) and the EAGC reference model are saved once per
*setup key* under ``GRID/setups/`` and every cell loads them from there. Variants of one seed
therefore start from bit-identical weights, as in the demo (docs/protocol.md).

The first process to need a key computes it under a file lock (other processes wait for it);
the file is published with an exclusive link, so even without working locks (some network
file systems) all cells load the same first-published weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from entangle.checkpoints.safe import safe_load
from entangle.gcd.setup import reference_head
from entangle.gcd.train import Setup, TrainConfig, ensure_reference, prepare
from entangle.runs.io import FileLock, make_dir, publish_once

# settings that decide the data split, the pretrained backbone and the fresh head
SETUP_FIELDS = (
    "data",
    "old_classes",
    "labeled_fraction",
    "model",
    "pretrained",
    "pretrain_epochs",
    "trainable_blocks",
    "seed",
    "synthetic_overlap",
)
# ... and what ensure_reference() additionally reads to train the reference model
REFERENCE_FIELDS = (
    "reference",
    "reference_epochs",
    "reference_lr",
    "reference_batch_size",
    "reference_weight_decay",
    "student_temperature",
)


def setup_key(config: TrainConfig, fields=SETUP_FIELDS) -> str:
    """A short hash of the settings in ``fields`` (cells with equal keys share weights)."""
    values = {f: getattr(config, f) for f in fields}
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def reference_key(config: TrainConfig) -> str:
    """Key of the reference model: the setup's settings plus the reference training's."""
    return setup_key(config, SETUP_FIELDS + REFERENCE_FIELDS)


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing, with its folder); released when
    the holder dies. Without ``fcntl`` (Windows) nothing is locked, and callers rely on
    :func:`entangle.runs.io.publish_once` for correctness."""
    make_dir(path.parent)
    with FileLock(path):
        yield


def _publish(path: Path, state: dict) -> None:
    publish_once(path, lambda fh: torch.save(state, fh))


def cached_setup(config: TrainConfig, folder, progress=None) -> Setup:
    """The cell's :class:`Setup`, loaded from (or first written to) ``folder``.

    Args:
        config: the cell's settings; its device is where the weights are moved.
        folder: the grid's ``setups/`` folder (shared by all workers).
        progress: passed to ``prepare``/``ensure_reference`` when they run.

    Returns:
        a Setup whose backbone/head (and, for EAGC cells, reference model) weights are those
        stored under the cell's setup key.
    """
    folder = Path(folder)
    key = setup_key(config)
    path = folder / f"{key}.pt"
    with file_lock(folder / f"{key}.lock"):
        if not path.exists():
            fresh = prepare(config, progress=progress)
            state = {"backbone": fresh.backbone.state_dict(), "head": fresh.head.state_dict()}
            _publish(path, state)
    # the shell has the right data and architecture; its weights are replaced below, so
    # it needs no pretraining (and no download of pretrained weights)
    shell = dataclasses.replace(config, pretrain_epochs=0, pretrained=None)
    setup = prepare(shell)
    # the grid folder may be someone else's: sizes checked, no code, one line if damaged
    state = safe_load(path)
    setup.backbone.load_state_dict(state["backbone"])
    setup.head.load_state_dict(state["head"])
    if config.needs_reference():
        setup.reference = _cached_reference(config, setup, folder, progress)
    return setup


def _cached_reference(config: TrainConfig, setup: Setup, folder: Path, progress):
    key = reference_key(config)
    path = folder / f"{key}.reference.pt"
    with file_lock(folder / f"{key}.reference.lock"):
        if not path.exists():
            ref_b, ref_h = ensure_reference(config, setup, progress=progress)
            _publish(path, {"backbone": ref_b.state_dict(), "head": ref_h.state_dict()})
            setup.reference = None
    # the grid folder may be someone else's: sizes checked, no code, one line if damaged
    state = safe_load(path)
    ref_b = copy.deepcopy(setup.backbone)
    ref_h = reference_head(setup.head, len(setup.data.old_classes), config.seed)
    ref_b.load_state_dict(state["backbone"])
    ref_h.load_state_dict(state["head"])
    for module in (ref_b, ref_h):
        module.eval().requires_grad_(False)
    return ref_b, ref_h
