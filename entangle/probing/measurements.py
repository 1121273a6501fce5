"""The Probe's optional measurements: small parts with one lifecycle (docs/architecture.md).

A :class:`Measurement` adds entries to a probed step's record. The Probe core (probe.py)
owns the step counter, the raw per-loss gradients, the one training backward and the record;
each part owns its own state and the record keys it names in ``keys`` (the core refuses an
``extra=`` entry that clashes with any part's keys). Like BackPACK's extensions, the parts
the constructor enables run together on every probed step, in the order the core lists them,
through these hooks (each optional; the base class does nothing):

1. ``before_backward(step)``: before any backward (the weights this step's forward used);
2. ``supervised(ps)``: return the raw supervised gradients as a by-product of the part's own
   pass (attribution's Jacobian pass), or None to let the core take them;
3. ``prepare(ps)``: extra gradient passes that must run before the training backward frees
   the graph;
4. ``measure(ps, record)``: add device-side entries (they reach the host in the core's one
   sync);
5. ``finish(record)``: add host-side entries after that sync.

A new measurement is one subclass with ``keys`` and the hooks it needs, listed in
``Probe._measurements``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from entangle.metrics import energy_ratio, free_energy
from entangle.probing.attribution import Attributor
from entangle.probing.attribution_rows import chosen_rows, row_products_of
from entangle.probing.step import ProbedStep, feature_conflict, grads, minus, row_groups
from entangle.probing.summaries import masked_summary
from entangle.runs import keys as record_keys  # `keys` is each measurement's attribute


class Measurement:
    """One optional measurement of a probed step; subclasses override the hooks they need."""

    keys: frozenset = frozenset()

    def before_backward(self, step: int) -> None:
        """Before any backward of probed call ``step``."""

    def supervised(self, ps: ProbedStep) -> list | None:
        """The raw supervised gradients (``ps.params`` order, + dL_sup/dz), or None."""
        return None

    def prepare(self, ps: ProbedStep) -> None:
        """Extra gradient passes before the training backward."""

    def measure(self, ps: ProbedStep, record: dict) -> None:
        """Add device-side entries to ``record``."""

    def finish(self, record: dict) -> None:
        """Add host-side entries to ``record`` (after the one host sync)."""


class EAGCCorrected(Measurement):
    """The same step's per-loss gradients through the EAGC correction, and the authors' GDC.

    Switches the step's coordination through ``eagc.measuring`` (EAGC owns that state), so
    raw and corrected terms never mix and this batch's EEP weights are used; beside it
    ``eagc_authors``, the corrected GDC as the authors' ``compute_gdc`` computes it (the
    previous call's EEP weights, none on the first). Fills ``ps.corrected_sup`` for the
    attribution part.
    """

    keys = frozenset({record_keys.EAGC, record_keys.EAGC_AUTHORS, record_keys.EAGC_AUTHORS_WEIGHTS})

    def __init__(self, eagc) -> None:
        self.eagc = eagc
        self._authors: tuple | None = None

    def prepare(self, ps: ProbedStep) -> None:
        if ps.state is None:
            return
        with self.eagc.measuring(ps.state, "full"):
            ps.corrected_sup = grads(ps.scaled(ps.sup), ps.params)
        with self.eagc.measuring(ps.state, "authors"):
            # the authors' compute_gdc: grad(L_sup) and grad(L_sup + L_unsup) through their
            # hook, which still holds the previous batch's EEP weights
            a_sup = grads(ps.scaled(ps.sup), ps.params)
            self._authors = (a_sup, grads(ps.scaled(ps.sup + ps.unsup), ps.params))

    def measure(self, ps: ProbedStep, record: dict) -> None:
        if ps.state is None:
            return
        corrected_u = minus(ps.total, ps.corrected_sup)
        record[record_keys.EAGC] = ps.metrics(ps.corrected_sup, corrected_u, ps.total)
        (a_sup, a_total), self._authors = self._authors, None
        record[record_keys.EAGC_AUTHORS] = ps.metrics(a_sup, minus(a_total, a_sup), a_total)
        record[record_keys.EAGC_AUTHORS_WEIGHTS] = (
            "eep off"
            if ps.state.weights is None
            else ("previous" if ps.state.previous_weights is not None else "none")
        )


class Coordinated(Measurement):
    """A gradient coordinator's applied update against the raw supervised gradient
    (docs/coordinators.md); the core's training backward is the coordinator's."""

    keys = frozenset({record_keys.COORDINATED})

    def measure(self, ps: ProbedStep, record: dict) -> None:
        if ps.applied is not None:
            applied = ps.applied
            applied_u = minus(applied, ps.raw_sup)
            record[record_keys.COORDINATED] = ps.metrics(ps.raw_sup, applied_u, applied)


class FeatureConflict(Measurement):
    """Per-row cos(dL_sup/dz_i, dL_unsup/dz_i) by row group, raw and EAGC-corrected (free)."""

    keys = frozenset({record_keys.FEATURE, record_keys.FEATURE_EAGC})

    def measure(self, ps: ProbedStep, record: dict) -> None:
        if ps.features is None:
            return
        record[record_keys.FEATURE] = feature_conflict(ps.g_s, ps.g_u, ps.labeled, ps.novel)
        if ps.state is not None:
            c_s, c_u = ps.corrected_feature_grads()
            record[record_keys.FEATURE_EAGC] = feature_conflict(c_s, c_u, ps.labeled, ps.novel)


class Attribution(Measurement):
    """Exact per-row shares of cos(g_S, g_U) on one group (docs/attribution.md).

    Every row: on a due step its Jacobian pass yields the group's raw g_S, so it supplies the
    raw supervised gradients and the core skips its own pass; the Jacobian lives only from
    ``supervised`` to ``measure`` of the same step. A subsample (``attributor.rows``): the
    core takes the raw gradients, and ``prepare`` takes one per-row backward per chosen row
    (and with EAGC one more for the corrected shares) before the training backward.
    """

    keys = frozenset({record_keys.ATTRIBUTION, record_keys.ATTRIBUTION_EAGC})

    def __init__(self, attributor: Attributor, index: dict, eagc=None) -> None:
        self.attributor = attributor
        self._index = index  # id(param) -> position in ps.params
        self.eagc = eagc
        self._jac = None
        self._rows = None

    def _pick(self, values: list) -> list:
        return [values[self._index[id(p)]] for p in self.attributor.params]

    def supervised(self, ps: ProbedStep) -> list | None:
        # never a Jacobian (or rows) of an earlier step that raised before measure
        self._jac, self._rows = None, None
        if ps.features is None or self.attributor.rows is not None:
            return None
        sup = ps.scaled(ps.sup)
        inputs = ps.params + [ps.features]
        if not self.attributor.is_due(ps.probed):
            return grads(sup, inputs)
        # the row Jacobian's create-graph pass, taken at u = dL_sup/dz, yields the attributed
        # group's g_S as its value, so only the parameters outside it need a backward of sup;
        # it is the same call that yields dL_sup/dz (one pass through the head, not two: each
        # gradient is the same sum in the same order, so the same numbers)
        in_group = {id(p) for p in self.attributor.params}
        rest = [p for p in ps.params if id(p) not in in_group]
        *rest_values, feat_sup = grads(sup, rest + [ps.features])
        if feat_sup is None:  # not in the graph: the core says so (or sup has no rows)
            return grads(sup, inputs)
        jac = self.attributor.prepare(ps.features, ps.probed, at=feat_sup)
        group = {id(p): value for p, value in zip(jac.params, jac.value, strict=True)}
        rest_grads = dict(zip(map(id, rest), rest_values, strict=True))
        self._jac = jac
        return [group[id(p)] if id(p) in group else rest_grads[id(p)] for p in ps.params] + [
            feat_sup
        ]

    def prepare(self, ps: ProbedStep) -> None:
        """A subsample's per-row products, while the forward graph is alive."""
        att = self.attributor
        if att.rows is None or ps.features is None or not att.is_due(ps.probed):
            return
        feat = ps.features
        if ps.raw_unsup is not None:  # EAGC: the raw pass took dL_unsup/dz
            feat_u = ps.raw_unsup[-1]
        else:
            (feat_u,) = grads(ps.scaled(ps.unsup), [feat])
        if feat_u is None:
            return
        att.check(feat)
        rows = chosen_rows(feat.shape[0], att.rows, ps.step)
        pairs = [(self._pick(ps.raw_sup), feat_u)]
        if ps.state is not None:
            pairs.append((self._pick(ps.corrected_sup), ps.state.transform(feat_u, "linear")))
        identity = nullcontext() if ps.state is None else self.eagc.measuring(ps.state, "identity")
        with identity:
            products = row_products_of(feat, att.params, pairs, rows)
        self._rows = (rows.to(feat.device), products)

    def measure(self, ps: ProbedStep, record: dict) -> None:
        jac, self._jac = self._jac, None
        chosen, self._rows = self._rows, None
        if (jac is None and chosen is None) or ps.features is None:
            return
        rows = _attribution_rows(ps.rows, ps.labeled, ps.novel, ps.logits)
        att, pick = self.attributor, self._pick
        c_total = None if ps.state is None else minus(ps.total, ps.corrected_sup)
        if chosen is not None:
            sub = {"chosen": chosen[0], "of": ps.features.shape[0], "seed": ps.step}
            raw = att.result(chosen[1][0], pick(ps.raw_sup), pick(ps.raw_u), **sub, **rows)
            record[record_keys.ATTRIBUTION] = raw
            if ps.state is not None:
                corrected = att.result(
                    chosen[1][1], pick(ps.corrected_sup), pick(c_total), **sub, **rows
                )
                record[record_keys.ATTRIBUTION_EAGC] = corrected
            return
        record[record_keys.ATTRIBUTION] = att.measure(
            jac, pick(ps.raw_sup), pick(ps.raw_u), ps.g_s, ps.g_u, **rows
        )
        if ps.state is not None:
            c_s, c_u = ps.corrected_feature_grads()
            record[record_keys.ATTRIBUTION_EAGC] = att.measure(
                jac, pick(ps.corrected_sup), pick(c_total), c_s, c_u, **rows
            )


class Energies(Measurement):
    """Known-subspace energy ratios, EEP weights, EEP's mu and the logit free energy."""

    keys = frozenset({record_keys.ENERGY, record_keys.EAGC_MU})

    def __init__(self, eagc, known_subspace, temperature: float, source: str) -> None:
        self.eagc = eagc
        self.known_subspace = known_subspace
        self.temperature = temperature
        self.source = source

    def measure(self, ps: ProbedStep, record: dict) -> None:
        if ps.features is None:
            return
        energy = self._energy(ps)
        if energy:
            record[record_keys.ENERGY] = energy
        if ps.state is not None and ps.state.mu is not None:
            # EEP's threshold this step (docs/records.md)
            record[record_keys.EAGC_MU] = ps.state.mu

    def _energy(self, ps: ProbedStep) -> dict:
        state, labeled = ps.state, ps.labeled
        conceptor = self.eagc.conceptor if self.eagc is not None else self.known_subspace
        groups = row_groups(labeled, ps.novel)
        out: dict = {}
        if conceptor is not None:
            if state is not None and state.energy is not None:
                ratio = state.energy
            else:
                z = ps.features.detach()
                ratio = energy_ratio(z, conceptor.to(z.device), warn=False)
            out[record_keys.ENERGY_RATIO] = {k: masked_summary(ratio, m) for k, m in groups.items()}
            ps.keep_rows("energy_ratio", ratio)
            # which conceptor the ratios are under (docs/quantities.md, "Which conceptor")
            out["conceptor"] = "eep" if self.eagc is not None else "known_subspace"
        if state is not None and state.weights is not None:
            unl = ~labeled if labeled is not None else None
            out[record_keys.EEP_WEIGHT] = masked_summary(state.weights, unl)
            ps.keep_rows(record_keys.EEP_WEIGHT, state.weights)
            out[record_keys.EEP_WEIGHT]["frac_zero"] = _share(state.weights == 0, unl)
            # rows EEP acts on (docs/calibration.md: w_i > 0.01)
            out[record_keys.EEP_WEIGHT]["frac_active"] = _share(state.weights > 0.01, unl)
        if ps.logits is not None:
            # the free energy of the softmax the classifier uses: over logits / T
            fe = free_energy(ps.logits.detach() / self.temperature)
            out["free_energy"] = {k: masked_summary(fe, m) for k, m in groups.items()}
            out["free_energy_temperature"] = self.temperature
            out["free_energy_temperature_source"] = self.source
        return out


class ProbeSetResults(Measurement):
    """A :class:`~entangle.probing.probeset.ProbeSet` evaluated on the probed steps it is due,
    before the step's training backward (the weights the step's forward used)."""

    keys = frozenset({record_keys.PROBESET})

    def __init__(self, probeset, every: int) -> None:
        self.probeset = probeset
        self.every = every
        self._result = None

    def before_backward(self, step: int) -> None:
        self._result = self.probeset.evaluate() if self.probeset.is_due(step, self.every) else None

    def finish(self, record: dict) -> None:
        result, self._result = self._result, None
        if result is not None:
            record[record_keys.PROBESET] = result


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


def _share(flags: torch.Tensor, mask) -> torch.Tensor:
    if mask is None:
        return flags.float().mean()
    return (flags & mask).sum() / mask.sum().clamp_min(1)


def enabled_parts(
    eagc, coordinator, attributor, index, known_subspace, temperature, probeset, every
) -> list[Measurement]:
    """The measurements a Probe's constructor enabled, in record order.

    ``temperature``: ``(T, source)`` of the free energy; the rest as the Probe holds them.
    """
    parts: list[Measurement] = []
    if eagc is not None:
        parts.append(EAGCCorrected(eagc))
    if coordinator is not None:
        parts.append(Coordinated())
    parts.append(FeatureConflict())
    if attributor is not None:
        parts.append(Attribution(attributor, index, eagc))
    parts.append(Energies(eagc, known_subspace, *temperature))
    if probeset is not None:
        parts.append(ProbeSetResults(probeset, every))
    return parts
