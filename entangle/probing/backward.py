"""The probed step's backward: the raw pass, the one training backward, the conflict metrics.

:func:`step_record` runs a probed step for the Probe (probing/probe.py): raw g_S (and with
EAGC raw g_U) from ONE extra backward in EAGC's identity mode (:func:`raw_gradients`), the
training backward with temporary hooks that capture its gradient of every probed leaf
(:func:`training_backward`; g_U = total - g_S, never recomputed), and per-group conflict
statistics (:func:`group_metrics`, all-reduced under DDP). The measurements' hooks run
between them (docs/architecture.md, "Probe parts").
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from entangle.errors import EntangleValueError
from entangle.metrics.gradients import conflict_from_products
from entangle.nn.distributed import world_size
from entangle.probing.step import ProbedStep, flat, grads, minus, or_zeros, products
from entangle.runs import keys


def measuring(eagc, state, mode: str):
    """EAGC's backward mode switched for one measurement pass (a no-op without EAGC)."""
    return eagc.measuring(state, mode) if eagc is not None else nullcontext()


def step_record(ps: ProbedStep, measurements, *, eagc, coordinator, index, epoch) -> dict:
    """The probed step's backward passes and its record, still on the device.

    The raw pass (g_S, with EAGC also g_U, in EAGC's identity mode), each measurement's
    ``prepare``, the one training backward, the core entries (``step``, ``epoch``,
    ``losses``, ``raw``, ``n_labeled``) and each measurement's ``measure``; the Probe then
    moves the record to the host in its one sync (``Probe.transfer``).
    """
    raw_gradients(ps, measurements, eagc)
    for part in measurements:
        part.prepare(ps)
    ps.total, feature_total, ps.applied = training_backward(ps, eagc, coordinator, index)

    record: dict = {keys.STEP: ps.step}
    if epoch is not None:
        record[keys.EPOCH] = epoch
    record[keys.LOSSES] = {"sup": ps.sup.detach(), "unsup": ps.unsup.detach()}
    n = len(ps.params)
    if ps.raw_unsup is not None:  # with EAGC the captured total is the corrected one
        ps.raw_u, ps.raw_total = ps.raw_unsup[:n], None
    else:
        ps.raw_u, ps.raw_total = minus(ps.total, ps.raw_sup), ps.total
    record[keys.RAW] = ps.metrics(ps.raw_sup, ps.raw_u, ps.raw_total)
    if ps.features is not None:
        ps.g_s = or_zeros(ps.raw_sup[-1], ps.features)
        g_u = ps.raw_unsup[-1] if ps.raw_unsup is not None else feature_total - ps.g_s
        ps.g_u = or_zeros(g_u, ps.features)
    for part in measurements:
        part.measure(ps, record)
    if ps.labeled is not None:
        record[keys.N_LABELED] = ps.labeled.sum()
    return record


def raw_gradients(ps: ProbedStep, measurements, eagc) -> None:
    """Raw g_S (and with EAGC raw g_U) through the identity mode of the coordination."""
    features, sup, unsup = ps.features, ps.scaled(ps.sup), ps.scaled(ps.unsup)
    inputs = ps.params + ([features] if features is not None else [])
    with measuring(eagc, ps.state, "identity"):
        raw_sup = None
        for part in measurements:
            raw_sup = raw_sup if raw_sup is not None else part.supervised(ps)
        ps.raw_sup = raw_sup if raw_sup is not None else grads(sup, inputs)
        if features is not None and ps.raw_sup[-1] is None:
            if grads(unsup, [features])[0] is None:
                raise EntangleValueError(
                    "features is not in the graph of the losses: pass the tensor the losses "
                    "were computed from (the same forward), not a recomputed one"
                )
        if ps.state is not None:
            ps.raw_unsup = grads(unsup, inputs)


def training_backward(ps: ProbedStep, eagc, coordinator, index: dict):
    """The one training backward; hooks capture this call's gradient of every probed leaf.

    With a coordinator it makes the backward (given the raw g_S, no extra one) and the
    third result is the applied gradient of every probed leaf (else None).
    """
    params, features = ps.params, ps.features
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
        if features is not None and eagc is None:
            handles.append(features.register_hook(keep_feature))
        if coordinator is None:
            ps.scaled(ps.sup + ps.unsup).backward()
        else:
            coordinated = coordinator.params
            given = [ps.raw_sup[index[id(p)]] for p in coordinated]
            out = coordinator.backward(ps.sup, ps.unsup, scaler=ps.scaler, sup_grads=given)
    finally:
        for h in handles:
            h.remove()
    if coordinator is None:
        return captured, feature_total[0], None
    applied = dict(zip(map(id, coordinated), out, strict=True))
    applied = [applied.get(id(p), t) for p, t in zip(params, captured, strict=True)]
    return captured, feature_total[0], applied


def group_metrics(
    groups: dict, index: dict, sup_grads, unsup_grads, total_grads, scale, distributed, named
) -> dict:
    """Conflict statistics per group; ``total_grads`` (the captured training gradient,
    g_S + g_U) keeps GDC exact when the losses nearly cancel (else s + u elementwise).

    ``index`` maps ``id(param)`` to its position in the gradient lists; ``scale`` is the loss
    scale to divide out (None: unscaled); ``distributed``: all-reduce under DDP; ``named``:
    one entry per group name (else the single group's statistics).
    """
    out = {}
    for name, group in groups.items():
        idx = [index[id(p)] for p in group]
        if distributed and world_size() > 1:
            # averaged gradients need whole vectors; one all-reduce per group
            both = torch.stack([flat([g[i] for i in idx], group) for g in (sup_grads, unsup_grads)])
            torch.distributed.all_reduce(both)
            s, u = both[0] / world_size(), both[1] / world_size()
            t = s + u
            dots = torch.stack([s @ s, u @ u, s @ u, s @ t, t @ t]).double()
        else:
            totals = None if total_grads is None else [total_grads[i] for i in idx]
            dots = products([sup_grads[i] for i in idx], [unsup_grads[i] for i in idx], totals)
        if scale is not None:
            dots = dots / scale.double() ** 2
        out[name] = conflict_from_products(*dots)
    return out if named else out["params"]
