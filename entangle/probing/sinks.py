"""Where a Probe's records go: one store (a run directory or memory) plus optional sinks.

The store keeps the records (``steps.jsonl`` / ``epochs.jsonl`` of a run, or the probe's
``records`` / ``epoch_records`` lists) and returns each epoch record as written; a sink
(TensorBoard) receives every record after the store. Both interfaces are documented in
docs/architecture.md ("Probe parts").
"""

from __future__ import annotations

from pathlib import Path

from entangle.errors import EntangleValueError
from entangle.nn.distributed import is_main_process
from entangle.probing.evaluation import write_epoch
from entangle.probing.tensorboard import TensorBoardOut
from entangle.runs import keys
from entangle.runs.directory import RunWriter


class MemoryStore:
    """Records kept in lists (a Probe without a run)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.epoch_records: list[dict] = []

    def write_step(self, record: dict) -> None:
        self.records.append(record)

    def write_epoch(self, epoch: int, step: int, record: dict, arrays) -> dict:
        record = {keys.EPOCH: int(epoch), keys.STEP: step} | record
        self.epoch_records.append(record)
        return record

    def finish(self, summary: dict | None) -> None:
        pass

    def abort(self) -> None:
        pass


class RunStore(MemoryStore):
    """Records appended to a run directory; a run the store opened from a path is finished
    (DONE) by :meth:`finish`, one passed in as a RunWriter is left to its owner."""

    def __init__(self, run, *, config=None, seed=None, device=None, default=None) -> None:
        super().__init__()
        self.own = isinstance(run, str | Path)
        if self.own:
            # a path starts a new run (never appends to an old one); to continue a run,
            # pass RunWriter(path, resume=True)
            device = default if device is None else device  # the parameters' device
            run = RunWriter(run, config=config, seed=seed, device=device)
        elif config is not None or seed is not None or device is not None:
            raise EntangleValueError(
                "config=, seed= and device= describe a run the Probe opens from a path; "
                "for a RunWriter you pass in, give them to RunWriter(path, config=, seed=)"
            )
        self.run = run

    def write_step(self, record: dict) -> None:
        self.run.write_step(record)

    def write_epoch(self, epoch: int, step: int, record: dict, arrays) -> dict:
        return write_epoch(self.run, epoch, step, record, arrays)

    def finish(self, summary: dict | None) -> None:
        if self.own:
            self.run.finish(summary)

    def abort(self) -> None:
        # an exception leaves the run incomplete (no DONE), as a crash would
        if self.own:
            self.run.close()


class TensorBoardSink:
    """Every probed scalar and evaluation record under stable tags (docs/records.md)."""

    def __init__(self, target, histogram_every: int, run=None) -> None:
        # the run's class names (when its config has them) name the per-class attribution
        config = (getattr(run, "meta", None) or {}).get("config")
        names = config.get("class_names") if isinstance(config, dict) else None
        names = names if isinstance(names, list) and names else None
        self.out = TensorBoardOut(target, histogram_every=histogram_every, class_names=names)

    def wants_histograms(self) -> bool:
        return self.out.histogram_due()

    def write_step(self, record: dict, histograms: dict) -> None:
        self.out.write_step(record, histograms)

    def write_epoch(self, record: dict) -> None:
        self.out.write_epoch(record)

    def close(self) -> None:
        self.out.close()


def open_sinks(run, tensorboard, histogram_every: int, params: list, *, config, seed, device):
    """``(store, tensorboard_sink)`` for a Probe: the run (rank 0 only under DDP) or memory,
    then TensorBoard (rank 0 only; None without ``tensorboard``).

    ``params``: the probed parameters, whose first one's device a new run records by default.
    """
    main = is_main_process()
    if run is not None and main:
        default = str(params[0].device) if params else None
        store = RunStore(run, config=config, seed=seed, device=device, default=default)
    else:
        store = MemoryStore()
    sink = None
    if tensorboard is not None and main:
        sink = TensorBoardSink(tensorboard, histogram_every, getattr(store, "run", None))
    return store, sink
