"""Probe: per-step labeled/unlabeled gradient diagnostics inside any training loop.

``probe.backward(sup, unsup, ...)`` replaces ``(sup + unsup).backward()``. It fills ``.grad``
with the training gradient exactly as a plain backward would (the EAGC-corrected one when
EAGC coordinates the features) and, on probed steps, measures:

- raw g_S / g_U on each parameter group from ONE extra backward of the supervised loss; the
  unsupervised part is the training gradient minus g_S, captured by temporary hooks during
  the training backward (never recomputed);
- with EAGC, the same step's corrected per-loss gradients, switching this call's own
  coordination state between identity / corrected modes, so raw and corrected terms never mix
  and the current batch's EEP weights are used (the reference code's defect 1, docs/quantities.md);
  beside it ``eagc_authors``, the corrected GDC as the authors' ``compute_gdc`` computes it
  (the previous call's EEP weights, none on the first), for comparisons with the paper;
- per-row feature-gradient conflict and known-subspace energy summaries.

All metrics stay on the device; the record reaches the host in one sync.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from entangle.eagc import EAGC, CoordinationState, loss_scale
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.metrics import energy_ratio, free_energy, rowwise_cosine
from entangle.metrics.energy import SIMGCD_LOGIT_TEMPERATURE
from entangle.metrics.gradients import CONFLICT_KEYS, conflict_from_products
from entangle.nn.distributed import is_main_process, world_size
from entangle.probing.attribution import Attributor
from entangle.probing.params import parameter_groups
from entangle.probing.summaries import conflict_summary, masked_summary, to_host

# every top-level key a step record of the probe can hold (docs/records.md)
RECORD_KEYS = frozenset(
    {"step", "epoch", "losses", "raw", "eagc", "coordinated", "feature", "feature_eagc", "energy"}
    | {"n_labeled", "nan", "probeset", "attribution", "attribution_eagc", "eagc_mu"}
    | {"eagc_authors", "eagc_authors_weights"}
    | {"rank_local"}
)
# entries computed from this rank's rows alone under DDP (named in the record's rank_local)
RANK_LOCAL_KEYS = ("losses", "feature", "feature_eagc", "energy", "n_labeled")


@contextmanager
def _mode(state: CoordinationState | None, mode: str):
    if state is None:
        yield
        return
    previous = state.mode
    state.mode = mode
    try:
        yield
    finally:
        state.mode = previous


class Probe:
    """Measure gradient entanglement at every ``every``-th backward call.

    Args:
        params: a module (its trainable parameters), a list of parameters, or a dict of named
            groups such as ``{"last_block": last_block(backbone), "all": model}``.
        every: probe one backward call in ``every``; the others are plain backwards.
        run: a :class:`~entangle.runs.directory.RunWriter`, or a path where a new run is
        started (and
            finished by :meth:`close`); records are appended there (rank 0 only under DDP).
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
        tensorboard: a ``torch.utils.tensorboard.SummaryWriter`` or a log directory: every
            probed scalar and evaluation record is also written there under stable tags
            (docs/records.md, "TensorBoard tags"); needs the ``[tb]`` extra.
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
        tensorboard=None,
        histogram_every: int = 10,
        config=None,
        seed: int | None = None,
        device: str | None = None,
    ) -> None:
        if int(every) < 1:
            raise EntangleValueError(f"every must be a positive integer, got {every}")
        self.groups, self._named = parameter_groups(params)
        seen: dict[int, torch.Tensor] = {}
        for group in self.groups.values():
            for p in group:
                seen.setdefault(id(p), p)
        self._params = list(seen.values())
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self.every = int(every)
        self.eagc = eagc
        if coordinator is not None and eagc is not None:
            raise EntangleValueError("give Probe an eagc or a gradient coordinator, not both")
        if coordinator is not None and any(id(p) not in self._index for p in coordinator.params):
            raise EntangleValueError(
                "the coordinator's parameters must all be in the probed groups; add them to "
                "params (e.g. an 'all' group)"
            )
        self.coordinator = coordinator
        self.known_subspace = known_subspace
        self.probeset = probeset
        self.logit_temperature_source = (
            "given" if logit_temperature is not None else ("SimGCD default")
        )
        if logit_temperature is None:
            logit_temperature = SIMGCD_LOGIT_TEMPERATURE
        if not 0 < float(logit_temperature) < math.inf:
            raise EntangleValueError(
                f"logit_temperature must be a positive number, got {logit_temperature}"
            )
        self.logit_temperature = float(logit_temperature)
        self.distributed = world_size() > 1 if distributed is None else distributed
        self.attributor = _attributor(
            self.groups, attribution, attribution_group, attribution_sup_side
        )
        self.calls = 0
        self.epoch: int | None = None
        self.records: list[dict] = []
        self.epoch_records: list[dict] = []
        self._epochs_recorded = 0
        self.last: dict | None = None
        self._own_run = False
        self.run = None
        if run is not None and is_main_process():
            if isinstance(run, str | Path):
                from entangle.runs.directory import RunWriter

                # a path starts a new run (never appends to an old one); to continue a run,
                # pass RunWriter(path, resume=True)
                if device is None and self._params:
                    device = str(self._params[0].device)
                run = RunWriter(run, config=config, seed=seed, device=device)
                self._own_run = True
            elif config is not None or seed is not None or device is not None:
                raise EntangleValueError(
                    "config=, seed= and device= describe a run the Probe opens from a path; "
                    "for a RunWriter you pass in, give them to RunWriter(path, config=, seed=)"
                )
            self.run = run
        self.tensorboard = None
        if tensorboard is not None and is_main_process():
            from entangle.logs.tensorboard_out import TensorBoardOut

            self.tensorboard = TensorBoardOut(tensorboard, histogram_every=histogram_every)
        self._rows: dict = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def close(self, summary: dict | None = None) -> None:
        """End probing; a run the probe opened from a path is finished (DONE written).

        Idempotent. A run passed in as a RunWriter is left to its owner. The probe keeps no
        hooks, so nothing else needs undoing.
        """
        if self._closed:
            return
        if self._own_run and self.run is not None:
            self.run.finish(summary)
        self._close_tensorboard()
        self._closed = True

    def _close_tensorboard(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._own_run and self.run is not None:
            # an exception leaves the run incomplete (no DONE), as a crash would
            self.run.close()
            self._close_tensorboard()
            self._closed = True
        self.close()

    def is_due(self) -> bool:
        """Whether the next ``backward`` call will be probed."""
        return self.calls % self.every == 0

    def attribution_forward(self):
        """Context for the forward of the next step: math attention when it is attributed.

        Fused attention kernels have no double backward, which attribution needs (see
        docs/attribution.md); other steps keep the fast kernels. A no-op without attribution.
        """
        if self.attributor is None:
            return nullcontext()
        due = self.calls // self.every if self.is_due() else None
        return self.attributor.forward_context(due)

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
        accuracy="v2",
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
        from entangle.probing.evaluation import (
            embed_batches,
            epoch_record,
            loader_rows,
            write_epoch,
        )

        if epoch is None:
            epoch = self.epoch if self.epoch is not None else self._epochs_recorded
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        inputs, finish = loader_rows(loader, labeled=labeled, novel=novel, old_classes=old_classes)
        z, logits = embed_batches(backbone, head, inputs, device, autocast=autocast)
        labels, labeled, novel = finish()
        if aperture is None:
            aperture = getattr(self.eagc, "aperture", None) or 2.0
        record, arrays = epoch_record(
            z,
            logits,
            labels,
            labeled,
            novel,
            accuracy=accuracy,
            k=k or getattr(self.probeset, "k", 16),
            aperture=aperture,
        )
        self._epochs_recorded += 1
        if self.run is None:
            record = {"epoch": int(epoch), "step": self.calls} | record
            self.epoch_records.append(record)
        else:
            record = write_epoch(
                self.run, epoch, self.calls, record, arrays if save_features else None
            )
        if self.tensorboard is not None:
            self.tensorboard.write_epoch(record)
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
            _refuse_clash(extra, RECORD_KEYS)
        if features is not None:
            _check_scaling(features, self.eagc, scaler)
        step = self.calls
        self.calls += 1
        if step % self.every:
            if self.coordinator is not None:
                self.coordinator.backward(sup, unsup, scaler=scaler)
            else:
                _scaled(sup + unsup, scaler).backward()
            return None
        subset = None
        if self.probeset is not None and self.probeset.is_due(step, self.every):
            # before the training backward: the weights this step's forward used
            subset = self.probeset.evaluate()
        rows = {"targets": targets, "index": index}
        record = self._probed_backward(
            step, sup, unsup, features, labeled, novel, logits, scaler, rows
        )
        if subset is not None:
            record["probeset"] = subset
        if extra:
            _refuse_clash(extra, record)
            record.update(extra)
        self.last = record
        if self.run is not None:
            self.run.write_step(record)
        else:
            self.records.append(record)
        if self.tensorboard is not None:
            self.tensorboard.write_step(record, self._rows)
        self._rows = {}
        return record

    def _check_features(self, features, labeled, novel, logits):
        if features is None:
            if self.eagc is not None:
                raise EntangleValueError(
                    "Probe with eagc needs features=: pass the tensor eagc.coordinate returned"
                )
            return None, None, None
        if features.ndim != 2:
            raise EntangleValueError(f"features must be [n, D], got shape {tuple(features.shape)}")
        if not features.requires_grad:
            raise EntangleValueError(
                "features does not require grad: pass the tensor the losses were computed from "
                "(z = backbone(x); loss = f(head(z))), not a detached copy"
            )
        n = features.shape[0]
        masks = []
        for name, mask in (("labeled", labeled), ("novel", novel)):
            if mask is None:
                masks.append(None)
                continue
            mask = torch.as_tensor(mask, device=features.device)
            if mask.ndim != 1 or mask.shape[0] != n:
                raise EntangleValueError(
                    f"{name} has shape {tuple(mask.shape)} but features have {n} rows; pass "
                    "one entry per row (for two views, repeat the mask for both)"
                )
            masks.append(mask.bool())
        if logits is not None and logits.shape[0] != n:
            raise EntangleValueError(
                f"logits have {logits.shape[0]} rows but features {n}; pass matching rows"
            )
        state = None
        if self.eagc is not None:
            state = self.eagc.state_for(features)
            if state is None:
                raise EntangleValueError(
                    "features was not returned by eagc.coordinate (or by the EAGC given to this "
                    "Probe): pass the coordinated tensor to probe.backward"
                )
        return masks[0], masks[1], state

    def _probed_backward(self, step, sup, unsup, features, labeled, novel, logits, scaler, rows):
        labeled, novel, state = self._check_features(features, labeled, novel, logits)
        params = self._params
        inputs = params + ([features] if features is not None else [])
        scale = loss_scale(scaler, sup.device)

        jac = None
        with _mode(state, "identity"):
            if self.attributor is not None and features is not None:
                jac, raw_sup = self._attributed_sup(step, _scaled(sup, scaler), inputs, features)
            else:
                raw_sup = _grads(_scaled(sup, scaler), inputs)
            if features is not None and raw_sup[-1] is None:
                feat_unsup = _grads(_scaled(unsup, scaler), [features])[0]
                if feat_unsup is None:
                    raise EntangleValueError(
                        "features is not in the graph of the losses: pass the tensor the losses "
                        "were computed from (the same forward), not a recomputed one"
                    )
            raw_unsup = _grads(_scaled(unsup, scaler), inputs) if state is not None else None
        corrected_sup = authors = None
        if state is not None:
            with _mode(state, "full"):
                corrected_sup = _grads(_scaled(sup, scaler), params)
            with _mode(state, "authors"):
                # the authors' compute_gdc: grad(L_sup) and grad(L_sup + L_unsup) through
                # their hook, which still holds the previous batch's EEP weights
                authors = _grads(_scaled(sup, scaler), params)
                authors = (authors, _grads(_scaled(sup + unsup, scaler), params))

        total, feature_total, applied = self._training_backward(
            sup, unsup, scaler, params, features, raw_sup
        )

        record: dict = {"step": step}
        if self.epoch is not None:
            record["epoch"] = self.epoch
        record["losses"] = {"sup": sup.detach(), "unsup": unsup.detach()}
        if raw_unsup is not None:  # with EAGC the captured total is the corrected one
            raw_u, raw_total = raw_unsup[: len(params)], None
        else:
            raw_u, raw_total = _minus(total, raw_sup), total
        record["raw"] = self._group_metrics(raw_sup, raw_u, scale, raw_total)
        if state is not None:
            corrected_u = _minus(total, corrected_sup)
            record["eagc"] = self._group_metrics(corrected_sup, corrected_u, scale, total)
            a_sup, a_total = authors
            a_unsup = _minus(a_total, a_sup)
            record["eagc_authors"] = self._group_metrics(a_sup, a_unsup, scale, a_total)
            record["eagc_authors_weights"] = (
                "eep off"
                if state.weights is None
                else ("previous" if state.previous_weights is not None else "none")
            )
        if applied is not None:
            # the update the optimiser applies against the raw supervised gradient
            record["coordinated"] = self._group_metrics(
                raw_sup, _minus(applied, raw_sup), scale, applied
            )
        if features is not None:
            g_s = _or_zeros(raw_sup[-1], features)
            g_u = raw_unsup[-1] if raw_unsup is not None else feature_total - g_s
            g_u = _or_zeros(g_u, features)
            record["feature"] = _feature_conflict(g_s, g_u, labeled, novel)
            if state is not None:
                c_s = state.transform(g_s, "full")
                c_u = state.transform(g_u, "linear")
                record["feature_eagc"] = _feature_conflict(c_s, c_u, labeled, novel)
            if jac is not None:
                rows = _attribution_rows(rows, labeled, novel, logits)
                group = [self._index[id(p)] for p in self.groups[self.attributor.group]]
                pick = lambda grads: [grads[i] for i in group]  # noqa: E731
                record["attribution"] = self.attributor.measure(
                    jac, pick(raw_sup), pick(raw_u), g_s, g_u, **rows
                )
                if state is not None:
                    c_total = _minus(total, corrected_sup)
                    record["attribution_eagc"] = self.attributor.measure(
                        jac, pick(corrected_sup), pick(c_total), c_s, c_u, **rows
                    )
                del jac
            energy = self._energy(features, labeled, novel, logits, state)
            if energy:
                record["energy"] = energy
            if state is not None and state.mu is not None:
                record["eagc_mu"] = state.mu  # EEP's threshold this step (docs/records.md)
        if labeled is not None:
            record["n_labeled"] = labeled.sum()
        record = to_host(record)
        record["nan"] = _nan_reasons(record)
        if self.distributed and world_size() > 1:
            # gradient metrics are of the all-reduced (global) gradients; these entries are
            # of this rank's rows only, and the record says so (docs/records.md)
            record["rank_local"] = {
                "rank": torch.distributed.get_rank(),
                "world_size": world_size(),
                "keys": [k for k in RANK_LOCAL_KEYS if k in record],
            }
        return record

    def _attributed_sup(self, step, sup, inputs, features):
        """The raw supervised gradients of ``inputs``, and the row Jacobian on a due step.

        On an attributed step dL_sup/dz comes first (the head only); the row Jacobian's
        create-graph pass, taken at u = dL_sup/dz, then yields the attributed group's g_S as
        its value, so only the parameters outside the group need another backward.
        """
        probed = step // self.every
        if not self.attributor.is_due(probed):
            return None, _grads(sup, inputs)
        (feat_sup,) = _grads(sup, [features])
        if feat_sup is None:  # not in the graph: the caller says so (or sup has no rows)
            return None, _grads(sup, inputs)
        jac = self.attributor.prepare(features, probed, at=feat_sup)
        group = {id(p): value for p, value in zip(jac.params, jac.value, strict=True)}
        rest = [p for p in inputs[:-1] if id(p) not in group]
        rest_grads = dict(zip(map(id, rest), _grads(sup, rest), strict=True)) if rest else {}
        grads = [group[id(p)] if id(p) in group else rest_grads[id(p)] for p in inputs[:-1]]
        return jac, grads + [feat_sup]

    def _training_backward(self, sup, unsup, scaler, params, features, raw_sup):
        """The one training backward; hooks capture this call's gradient of every probed leaf.

        With a coordinator it makes the backward (given ``raw_sup``, no extra one) and the
        third result is the applied gradient of every probed leaf (else None).
        """
        captured: list[torch.Tensor | None] = [None] * len(params)
        feature_total: list[torch.Tensor | None] = [None]
        handles = []

        def keep(i):
            def hook(grad):
                captured[i] = grad

            return hook

        def keep_feature(grad):
            feature_total[0] = grad

        try:
            for i, p in enumerate(params):
                handles.append(p.register_hook(keep(i)))
            if features is not None and self.eagc is None:
                handles.append(features.register_hook(keep_feature))
            if self.coordinator is None:
                _scaled(sup + unsup, scaler).backward()
            else:
                coordinated = self.coordinator.params
                given = [raw_sup[self._index[id(p)]] for p in coordinated]
                out = self.coordinator.backward(sup, unsup, scaler=scaler, sup_grads=given)
        finally:
            for h in handles:
                h.remove()
        if self.coordinator is None:
            return captured, feature_total[0], None
        applied = dict(zip(map(id, coordinated), out, strict=True))
        applied = [applied.get(id(p), t) for p, t in zip(params, captured, strict=True)]
        return captured, feature_total[0], applied

    def _group_metrics(self, sup_grads, unsup_grads, scale, total_grads=None) -> dict:
        """Conflict statistics per group; ``total_grads`` (the captured training gradient,
        g_S + g_U) keeps GDC exact when the losses nearly cancel (else s + u elementwise)."""
        out = {}
        for name, group in self.groups.items():
            idx = [self._index[id(p)] for p in group]
            if self.distributed and world_size() > 1:
                # averaged gradients need whole vectors; one all-reduce per group
                both = torch.stack(
                    [_flat([g[i] for i in idx], group) for g in (sup_grads, unsup_grads)]
                )
                torch.distributed.all_reduce(both)
                s, u = both[0] / world_size(), both[1] / world_size()
                t = s + u
                products = torch.stack([s @ s, u @ u, s @ u, s @ t, t @ t]).double()
            else:
                totals = None if total_grads is None else [total_grads[i] for i in idx]
                products = _products(
                    [sup_grads[i] for i in idx], [unsup_grads[i] for i in idx], totals
                )
            if scale is not None:
                products = products / scale.double() ** 2
            out[name] = conflict_from_products(*products)
        return out if self._named else out["params"]

    def _keep_rows(self, name: str, values: torch.Tensor, labeled) -> None:
        """Per-row values for TensorBoard histograms: references only, copied to the host by
        the writer on its histogram steps (no sync here)."""
        if self.tensorboard is not None and self.tensorboard.histogram_due():
            self._rows[name] = values
            self._rows["labeled"] = labeled

    def _energy(self, features, labeled, novel, logits, state) -> dict:
        conceptor = self.eagc.conceptor if self.eagc is not None else self.known_subspace
        groups = _row_groups(labeled, novel)
        out: dict = {}
        if conceptor is not None:
            if state is not None and state.energy is not None:
                ratio = state.energy
            else:
                ratio = energy_ratio(features.detach(), conceptor.to(features.device), warn=False)
            out["ratio"] = {k: masked_summary(ratio, m) for k, m in groups.items()}
            self._keep_rows("energy_ratio", ratio, labeled)
            # which conceptor the ratios are under (docs/quantities.md, "Which conceptor")
            out["conceptor"] = "eep" if self.eagc is not None else "known_subspace"
        if state is not None and state.weights is not None:
            unl = ~labeled if labeled is not None else None
            out["eep_weight"] = masked_summary(state.weights, unl)
            self._keep_rows("eep_weight", state.weights, labeled)
            out["eep_weight"]["frac_zero"] = _share(state.weights == 0, unl)
            # rows EEP acts on (docs/calibration.md: w_i > 0.01)
            out["eep_weight"]["frac_active"] = _share(state.weights > 0.01, unl)
        if logits is not None:
            # the free energy of the softmax the classifier uses: over logits / T
            fe = free_energy(logits.detach() / self.logit_temperature)
            out["free_energy"] = {k: masked_summary(fe, m) for k, m in groups.items()}
            out["free_energy_temperature"] = self.logit_temperature
            out["free_energy_temperature_source"] = self.logit_temperature_source
        return out


# ---------------------------------------------------------------------- helpers


def _check_scaling(features, eagc, scaler) -> None:
    """Refuse a backward whose loss scaling differs from the one ``coordinate`` was told.

    The AGA term is added in the units of the incoming gradient: a scaler given to only one
    of ``eagc.coordinate`` and ``probe.backward`` multiplies (or divides) it by the loss
    scale, the reference code's AMP defect. Python-side only, no host sync.
    """
    state = eagc.state_for(features) if eagc is not None else None
    if state is None:  # coordinated by an EAGC the probe was not given
        state = getattr(features.grad_fn, "state", None)
    if not isinstance(state, CoordinationState):
        return
    scaled = scaler is not None and scaler.is_enabled()
    if scaled != state.scaled:
        given, missing = (
            ("probe.backward", "eagc.coordinate")
            if scaled
            else ("eagc.coordinate", "probe.backward")
        )
        raise EntangleValueError(
            f"a GradScaler was given to {given} but not to {missing}: the AGA term would be "
            "off by the loss scale; pass the same scaler= to both (or to neither)"
        )


def _refuse_clash(extra: dict, own) -> None:
    clash = sorted(set(extra) & set(own))
    if clash:
        raise EntangleValueError(
            f"extra= would overwrite the probe's own record entries {clash}; rename those "
            "keys (ProbeSet results: pass probeset= to Probe instead)"
        )


def _scaled(loss: torch.Tensor, scaler):
    return scaler.scale(loss) if scaler is not None else loss


def _grads(loss: torch.Tensor, inputs: list) -> list:
    if not loss.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True))


def _minus(total: list, part: list) -> list:
    out = []
    for t, s in zip(total, part, strict=False):
        if t is None:
            out.append(None if s is None else -s)
        else:
            out.append(t if s is None else t - s)
    return out


def _flat(grads: list, params: list) -> torch.Tensor:
    pairs = zip(grads, params, strict=True)
    parts = [g if g is not None else torch.zeros_like(p) for g, p in pairs]
    return torch.cat([part.reshape(-1) for part in parts])


def _products(sup: list, unsup: list, total: list | None = None) -> torch.Tensor:
    """``[<s,s>, <u,u>, <s,u>, <s,t>, <t,t>]`` summed over parameters in float64, without flat
    copies; t is ``total`` (the captured training gradient) or s + u elementwise."""
    parts = []
    total = [None] * len(sup) if total is None else total
    for s, u, t in zip(sup, unsup, total, strict=True):
        if s is None and u is None:
            continue
        s = torch.zeros_like(u) if s is None else s
        u = torch.zeros_like(s) if u is None else u
        s, u = s.reshape(-1), u.reshape(-1)
        t = s + u if t is None else t.reshape(-1)
        parts.append(torch.stack([s @ s, u @ u, s @ u, s @ t, t @ t]).double())
    if not parts:
        return torch.zeros(5, dtype=torch.float64)
    return torch.stack(parts).sum(0)


def _or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g


def _row_groups(labeled, novel) -> dict:
    if labeled is None:
        return {"all": None}
    groups = {"labeled": labeled, "unlabeled": ~labeled}
    if novel is not None:
        groups["unlabeled_old"] = ~labeled & ~novel
        groups["unlabeled_new"] = ~labeled & novel
    return groups


def _attributor(groups: dict, attribution, group: str | None, sup_side: bool):
    if attribution is False or attribution is None or attribution == 0:
        return None
    every = 1 if attribution is True else int(attribution)
    name = group if group is not None else next(iter(groups))
    if name not in groups:
        raise EntangleValueError(
            f"attribution_group {name!r} is not a probed group; choose one of {sorted(groups)}"
        )
    return Attributor(name, groups[name], every=every, sup_side=sup_side)


def _attribution_rows(rows: dict, labeled, novel, logits) -> dict:
    """Masks and ids for the attribution summary: oracle classes, predicted clusters."""
    out = {"labeled": labeled, "novel": novel, "index": rows.get("index")}
    targets = rows.get("targets")
    k = logits.shape[1] if logits is not None else None
    if targets is not None:
        targets = torch.as_tensor(targets)
        if k is None:
            k = int(targets.max()) + 1  # note: a host sync, only without logits
        out["classes"] = targets
    if logits is not None:
        out["clusters"] = logits.detach().argmax(dim=1)
    out["num_classes"] = k
    return out


def _feature_conflict(g_s, g_u, labeled, novel) -> dict:
    cos = rowwise_cosine(g_s, g_u, warn=False)
    return {k: conflict_summary(cos, m) for k, m in _row_groups(labeled, novel).items()}


def _share(flags: torch.Tensor, mask) -> torch.Tensor:
    if mask is None:
        return flags.float().mean()
    return (flags & mask).sum() / mask.sum().clamp_min(1)


def _nan_reasons(record: dict) -> dict:
    """Why a probed value is NaN, from host-side values: one reason per affected group."""
    reasons = {}
    losses = record.get("losses", {})
    bad_loss = [k for k, v in losses.items() if not math.isfinite(v)]
    no_labeled = record.get("n_labeled") == 0
    for kind in ("raw", "eagc", "eagc_authors", "coordinated"):
        stats = record.get(kind)
        if stats is None:
            continue
        groups = {"": stats} if "cos" in stats else stats
        for name, s in groups.items():
            if not any(_is_nan(s[k]) for k in CONFLICT_KEYS if k != "conflict"):
                continue
            key = f"{kind}.{name}".rstrip(".")
            if bad_loss:
                reasons[key] = f"loss {' and '.join(bad_loss)} is not finite"
            elif not (math.isfinite(s["norm_sup"]) and math.isfinite(s["norm_unsup"])):
                reasons[key] = "gradient not finite (AMP overflow? the scaler skips this step)"
            elif no_labeled and not s["norm_sup"] > 0:
                reasons[key] = "no labeled rows in this batch: the supervised gradient is zero"
            elif not s["norm_sup"] > 0:
                reasons[key] = "supervised gradient is zero on this group"
            elif not s["norm_unsup"] > 0:
                reasons[key] = "unsupervised gradient is zero on this group"
            else:
                reasons[key] = "g_sup + g_unsup is zero (the losses cancel exactly)"
    return reasons


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
