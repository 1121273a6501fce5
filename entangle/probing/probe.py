"""Probe: per-step labeled/unlabeled gradient diagnostics inside any training loop.

``probe.backward(sup, unsup, ...)`` replaces ``(sup + unsup).backward()``. It fills ``.grad``
with the training gradient exactly as a plain backward would (the EAGC-corrected one when
EAGC coordinates the features) and, on probed steps, measures raw g_S / g_U on each parameter
group from ONE extra backward of the supervised loss; the unsupervised part is the training
gradient minus g_S, captured by temporary hooks during the training backward (never
recomputed).

This module is the core: the step counter, the backward and the record. The optional
measurements (EAGC-corrected and the authors' metrics, per-row feature conflict, energies,
ProbeSet, attribution) are parts in probing/measurements.py; where records go (run
directory, memory, TensorBoard) is probing/sinks.py (docs/architecture.md, "Probe parts").
All metrics stay on the device; the record reaches the host in one sync (:meth:`Probe.transfer`).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from entangle.defaults import APERTURE, SOC_K
from entangle.eagc import EAGC, check_scaling, loss_scale
from entangle.errors import EntangleRuntimeError
from entangle.metrics.clustering import DEFAULT_PROTOCOL
from entangle.nn.distributed import world_size
from entangle.probing.backward import group_metrics, step_record
from entangle.probing.checks import (
    attributor_for,
    check_coordinator,
    check_every,
    check_features,
    check_measurement,
    refuse_clash,
    temperature_of,
)
from entangle.probing.core_keys import CORE_KEYS, RANK_LOCAL_KEYS, RECORD_KEYS, rank_local
from entangle.probing.counter import StepCounter
from entangle.probing.evaluation import evaluate_loader
from entangle.probing.measurements import Measurement, enabled_parts
from entangle.probing.params import distinct_params, parameter_groups
from entangle.probing.sinks import open_sinks
from entangle.probing.step import ProbedStep, scaled
from entangle.probing.summaries import nan_reasons, to_host
from entangle.runs import keys as record_keys  # `keys` is also a Probe method

# the record keys live in probing/core_keys.py; kept importable from here
__all__ = ["CORE_KEYS", "RANK_LOCAL_KEYS", "RECORD_KEYS", "Probe"]


class Probe(StepCounter):
    """Measure gradient entanglement at every ``every``-th backward call.

    Args:
        params: a module (its trainable parameters), a list of parameters, or a dict of named
            groups such as ``{"last_block": last_block(backbone), "all": model}``.
        every: probe one backward call in ``every``; the others are plain backwards.
        run: a :class:`~entangle.runs.directory.RunWriter`, or a path where a new run is
            started (and finished by :meth:`close`); records are appended there (rank 0 only
            under DDP).
            Without a run, records are kept in ``records``.
        eagc: the :class:`~entangle.eagc.EAGC` coordinating ``features``; its corrected
            per-loss gradients are measured too.
        coordinator: a :class:`~entangle.coordination.GradientCoordinator` that makes every
            step's training backward (its parameters must be probed ones); probed steps also
            record ``coordinated``: the applied update against the raw supervised gradient
            (docs/coordinators.md).
        known_subspace: ``[D, D]`` conceptor for energy summaries when no EAGC is given
            (records name it ``known_subspace``; with EAGC the ratios are under EEP's own
            conceptor, named ``eep``).
        probeset: a :class:`~entangle.probing.probeset.ProbeSet` evaluated on the probed steps it is
            due (``probeset.is_due(step, every)``), before this step's training backward,
            with the weights the step's forward used; its result is the record's
            ``probeset`` entry. This is the one way to record ProbeSet results.
        logit_temperature: T the classifier's softmax divides ``logits`` by; the free energy
            is -logsumexp(logits / T), recorded with T and where T came from. None (default):
            the recipe's, SimGCD's classifier temperature 0.1 on its cosine logits
            (``metrics.energy.SIMGCD_LOGIT_TEMPERATURE``), recorded as
            ``free_energy_temperature_source: "SimGCD default"``; give your classifier's T
            otherwise (1.0 for plain logits).
        distributed: average per-loss gradients over processes before measuring (default:
            when torch.distributed is initialised with more than one process).
        attribution: exact per-row shares of cos(g_S, g_U) on one group (see
            docs/attribution.md): True on every probed step, an int N on every N-th.
        attribution_group: the attributed group's name (default: the first group).
        attribution_sup_side: also split the product over the rows' supervised side.
        attribution_rows: None (default): every row. An int m: a seeded subsample of m rows
            per attributed step, exact for those rows, without the every-row method's
            double-backward graph (measured 1.35x plain's working memory at 8 of 64 rows vs
            1.97x for every row: docs/performance.md; docs/attribution.md, "A subsample of
            rows"; the record's ``subsample``).
        tensorboard: a ``torch.utils.tensorboard.SummaryWriter`` or a log directory: every
            probed scalar and evaluation record is also written there under stable tags
            (docs/records.md, "TensorBoard tags"), attribution per class too (named by
            the run's ``config["class_names"]`` when it has them, else class indices); needs
            the ``[tb]`` extra.
        histogram_every: with ``tensorboard``, histograms of the EEP weights and energy
            ratios of the step's rows on every ``histogram_every``-th probed step.
        config: with ``run`` a path, the run's configuration (dict or dataclass) written to
            its ``run.json``, what the report's run details and summary show.
        seed: with ``run`` a path, the random seed the run used.
        device: with ``run`` a path, the device (default: the first parameter's, e.g.
            ``"cuda:0"``). For a RunWriter you pass in, give these to the RunWriter.

    Example:
        >>> probe = Probe({"last_block": last_block(backbone)}, every=10)  # doctest: +SKIP
        >>> record = probe.backward(sup, unsup, features=z, labeled=m)    # doctest: +SKIP
    """

    def __init__(
        self,
        params,
        *,
        every: int = 1,
        run=None,
        eagc: EAGC | None = None,
        coordinator=None,
        known_subspace: torch.Tensor | None = None,
        probeset=None,
        logit_temperature: float | None = None,
        distributed: bool | None = None,
        attribution: bool | int = False,
        attribution_group: str | None = None,
        attribution_sup_side: bool = False,
        attribution_rows: int | None = None,
        tensorboard=None,
        histogram_every: int = 10,
        config=None,
        seed: int | None = None,
        device: str | None = None,
    ) -> None:
        check_every(every)
        self.groups, self._named = parameter_groups(params)
        self._params = distinct_params(self.groups)
        self._index = {id(p): i for i, p in enumerate(self._params)}
        super().__init__(every)
        self.eagc = eagc
        check_coordinator(coordinator, eagc, self._index)
        self.coordinator = coordinator
        self.known_subspace = known_subspace
        self.probeset = probeset
        self.logit_temperature, self.logit_temperature_source = temperature_of(logit_temperature)
        self.distributed = world_size() > 1 if distributed is None else distributed
        self.attributor = attributor_for(
            self.groups, attribution, attribution_group, attribution_sup_side, attribution_rows
        )
        parts = (eagc, coordinator, self.attributor, self._index, known_subspace)
        temperature = (self.logit_temperature, self.logit_temperature_source)
        self._measurements = enabled_parts(*parts, temperature, probeset, self.every)
        self._epochs_recorded = 0
        self.last: dict | None = None
        self._store, self._tensorboard = open_sinks(
            run, tensorboard, histogram_every, self._params, config=config, seed=seed, device=device
        )
        self.run = getattr(self._store, "run", None)
        self.records = self._store.records
        self.epoch_records = self._store.epoch_records
        self._closed = False

    def add_measurement(self, part: Measurement) -> Measurement:
        """Run one more :class:`~entangle.probing.measurements.Measurement` on probed steps.

        It runs after the built-in parts; its ``keys`` must not clash with any record key the
        probe already writes (docs/architecture.md, "Probe parts"). Returns ``part``.
        """
        check_measurement(part, self.keys)
        self._measurements.append(part)
        return part

    @property
    def keys(self) -> frozenset:
        """Every top-level key this probe's step records can hold (core and parts)."""
        return CORE_KEYS.union(*(part.keys for part in self._measurements), RECORD_KEYS)

    @property
    def tensorboard(self):
        """The TensorBoard writer (``probing.tensorboard.TensorBoardOut``) or None."""
        return self._tensorboard.out if self._tensorboard is not None else None

    # ------------------------------------------------------------------ lifecycle
    def close(self, summary: dict | None = None) -> None:
        """End probing; a run the probe opened from a path is finished (DONE written).

        Idempotent. A run passed in as a RunWriter is left to its owner. The probe keeps no
        hooks, so nothing else needs undoing.
        """
        if self._closed:
            return
        self._store.finish(summary)
        self._close_tensorboard()
        self._closed = True

    def _close_tensorboard(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self._store.abort()
            self._close_tensorboard()
            self._closed = True
        self.close()

    def attribution_forward(self):
        """Context for the forward of the next step: math attention when it is attributed.

        Fused attention kernels have no double backward, which attribution needs (see
        docs/attribution.md); other steps keep the fast kernels. A no-op without attribution.
        """
        if self.attributor is None:
            return nullcontext()
        due = self.calls // self.every if self.is_due() else None
        return self.attributor.forward_context(due)

    def transfer(self, record: dict) -> dict:
        """The probed step's one host sync: every tensor in ``record`` to a Python value.

        The single point a sync audit wraps (``probe.transfer = counting(probe.transfer)``,
        bench/gpu_check.py, tests/bench/test_syncaudit.py).
        """
        return to_host(record)

    # ------------------------------------------------------------------ evaluations
    def record_epoch(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module | None,
        loader,
        *,
        labeled: torch.Tensor | None = None,
        novel: torch.Tensor | None = None,
        old_classes=None,
        epoch: int | None = None,
        accuracy=DEFAULT_PROTOCOL,
        k: int | None = None,
        aperture: float | None = None,
        save_features: bool = True,
        autocast=None,
    ) -> dict:
        """Evaluate once and write the epoch record: the one call per evaluation of your loop.

        Embeds every batch of ``loader`` (eval mode, no grad, on the backbone's device),
        computes clustering accuracy on the unlabeled rows, SOC / principal angles / energy
        summaries (this probe's EAGC aperture unless given), saves the features for the
        report's energy and t-SNE sections and appends the record to the run's epochs.jsonl
        (keys: docs/records.md). The same code evaluates the GCD recipe's epochs.

        Args:
            backbone: ``x -> z [b, D]``.
            head: ``z -> logits`` or ``(proj, logits)``; None skips accuracy.
            loader: batches ``(x, labels, ...)`` in a fixed order; a 4th item (SimGCD's
                ``mask_lab``) marks labeled rows when ``labeled`` is not given.
            labeled: ``[n]`` bool, labeled rows (Z_old), in the loader's order.
            novel: ``[n]`` bool, rows of novel classes; or pass ``old_classes``.
            old_classes: the number K of old classes (0..K-1, SimGCD's convention) or their ids.
            epoch: the epoch number (default: ``probe.epoch`` if set, else a running count).
            accuracy: accuracy protocols, ``"v2"`` (SimGCD's and EAGC's), ``"v1"``, ``"v2b"`` or
                a list / comma string; the first fills ``acc_*`` (see docs/accuracy.md).
            k: SOC subspace dimension (default: the ProbeSet's k, else 16, the paper's).
            aperture: conceptor aperture (default: the EAGC's, else 2.0).
            save_features: save ``features/epoch_NNN.npz`` (the report needs it).
            autocast: context manager for the forward (e.g. bf16 autocast on CUDA).

        Returns:
            the epoch record as written.
        """
        if epoch is None:
            epoch = self.epoch if self.epoch is not None else self._epochs_recorded
        if aperture is None:
            aperture = getattr(self.eagc, "aperture", None) or APERTURE
        record, arrays = evaluate_loader(
            backbone,
            head,
            loader,
            rows={"labeled": labeled, "novel": novel, "old_classes": old_classes},
            accuracy=accuracy,
            k=k or getattr(self.probeset, "k", SOC_K),
            aperture=aperture,
            autocast=autocast,
        )
        self._epochs_recorded += 1
        record = self._store.write_epoch(
            epoch, self.calls, record, arrays if save_features else None
        )
        if self._tensorboard is not None:
            self._tensorboard.write_epoch(record)
        return record

    # ------------------------------------------------------------------ the backward
    def backward(
        self,
        sup: torch.Tensor,
        unsup: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
        labeled: torch.Tensor | None = None,
        novel: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        scaler=None,
        extra: dict | None = None,
        targets: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> dict | None:
        """Backward of ``sup + unsup`` (scaled by ``scaler`` if given), probing on due steps.

        Args:
            sup: scalar supervised loss L_sup.
            unsup: scalar unsupervised loss L_unsup.
            features: ``[n, D]`` the feature tensor the losses were computed from (the output
                of ``eagc.coordinate`` when EAGC is on); enables per-row diagnostics.
            labeled: ``[n]`` bool, labeled rows.
            novel: ``[n]`` bool, rows whose true class is novel (known in diagnostics only).
            logits: ``[n, K]`` the classifier's logits before its softmax temperature (for
                SimGCD the head's cosine logits; the Probe's ``logit_temperature``, 0.1 there,
                divides them), for the free energy -logsumexp(logits / T) per row group.
            scaler: ``torch.amp.GradScaler``; losses are scaled, metrics use unscaled values.
                With EAGC, ``eagc.coordinate`` must have been given the same scaler (a
                mismatch is refused before any backward).
            extra: more entries for this step's record, probed steps only; a key the probe
                writes itself (``energy``, ``raw``, ``probeset`` ...) is refused. ProbeSet
                results go through ``Probe(..., probeset=)``, not here.
            targets: ``[n]`` ground-truth classes (oracle), for class-level attribution.
            index: ``[n]`` dataset index of each row, named in the attribution's top rows.

        Returns:
            the step record (keys: docs/records.md) on probed steps, else None.
        """
        if self._closed:
            raise EntangleRuntimeError("this Probe was closed; create a new one")
        if extra:
            # checked before the backward, so a clash leaves .grad untouched
            refuse_clash(extra, self.keys)
        if features is not None:
            check_scaling(features, scaler, self.eagc)
        step = self.calls
        self._calls += 1
        if step % self.every:
            if self.coordinator is not None:
                self.coordinator.backward(sup, unsup, scaler=scaler)
            else:
                scaled(sup + unsup, scaler).backward()
            return None
        for part in self._measurements:
            part.before_backward(step)
        rows = {"targets": targets, "index": index}
        record, histograms = self._probed_backward(
            step, sup, unsup, features, labeled, novel, logits, scaler, rows
        )
        for part in self._measurements:
            part.finish(record)
        if extra:
            refuse_clash(extra, record)
            record.update(extra)
        self.last = record
        self._store.write_step(record)
        if self._tensorboard is not None:
            self._tensorboard.write_step(record, histograms)
        return record

    def _probed_backward(self, step, sup, unsup, features, labeled, novel, logits, scaler, rows):
        labeled, novel, state = check_features(features, labeled, novel, logits, self.eagc)
        tb = self._tensorboard
        scale = loss_scale(scaler, sup.device)
        ps = ProbedStep(
            step=step,
            probed=step // self.every,
            sup=sup,
            unsup=unsup,
            scaler=scaler,
            scale=scale,
            params=self._params,
            features=features,
            labeled=labeled,
            novel=novel,
            logits=logits,
            rows=rows,
            state=state,
            metrics=lambda s, u, t=None: group_metrics(
                self.groups, self._index, s, u, t, scale, self.distributed, self._named
            ),
            histograms={} if tb is not None and tb.wants_histograms() else None,
        )
        record = step_record(
            ps,
            self._measurements,
            eagc=self.eagc,
            coordinator=self.coordinator,
            index=self._index,
            epoch=self.epoch,
        )
        record = self.transfer(record)
        record["nan"] = nan_reasons(record)
        if self.distributed and world_size() > 1:
            record[record_keys.RANK_LOCAL] = rank_local(record)
        return record, ps.histograms or {}
