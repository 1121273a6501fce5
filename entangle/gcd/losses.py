"""SimGCD's objective, split into the supervised and unsupervised parts the probe separates.

With both views stacked (rows ``0..b-1`` view 1, ``b..2b-1`` view 2), ``w = sup_weight``:

    sup   = w (CE(logits / tau_s) on labeled rows of both views + SupCon on labeled rows)
    unsup = (1 - w) (self-distillation + lambda_me (log K - H(mean prediction)) + InfoNCE)

- CE: cross-entropy of ``logits / student_temperature`` against the labels, mean over the
  labeled rows of both views.
- SupCon (Khosla et al., the L_out form): over the L2-normalised projections of labeled rows,
  for each anchor the mean over its positives (same class, itself excluded) of
  ``-log softmax_a(s_ia / tau)`` where ``a`` runs over every other labeled row.
- self-distillation: for each view, ``-sum q log p`` between the student ``p = softmax(logits
  / student_temperature)`` of that view and the teacher ``q = softmax(sg(logits) / T_t)`` of
  the other view, mean over rows, averaged over both directions. ``T_t`` warms linearly from
  ``warmup_teacher_temperature`` to ``teacher_temperature`` (``teacher_temperature_at``).
- mean-entropy regulariser: ``log K - H(pbar)``, ``pbar`` the mean student prediction over all
  rows; it is >= 0 and minimising it spreads predictions over all K classes.
- InfoNCE: SimCLR's unsupervised contrastive loss over all ``2b`` normalised projections, the
  other view of the same sample the positive, every other row a negative, the cosine
  similarities divided by ``infonce_temperature`` (SimGCD: 1.0, its ``info_nce_logits``
  default; not SupCon's 0.07).

Every default of :class:`LossConfig` is SimGCD's (see docs/protocol.md for where each comes
from).

Every term is computed with masks rather than by selecting rows, so a batch without labeled
rows gives ``sup == 0`` exactly with a zero (not NaN) gradient, and no step needs a host sync.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from entangle.defaults import SimGCDLoss
from entangle.errors import EntangleValueError


@dataclass(frozen=True)
class LossConfig(SimGCDLoss):
    """Weights and temperatures of the SimGCD objective, checked; every default is SimGCD's.

    The fields and their defaults are :class:`entangle.defaults.SimGCDLoss`'s (torch-free, so
    the CLI's ``--help`` reads them without importing this module); this class adds the checks
    and :meth:`of`.
    """

    @classmethod
    def of(cls, settings, **overrides) -> LossConfig:
        """The objective of ``settings``: a config object or a mapping holding the loss fields
        by name (missing ones keep SimGCD's default), with ``overrides`` on top."""
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(settings, Mapping):
            values = {n: settings[n] for n in names if n in settings}
        else:
            values = {n: getattr(settings, n) for n in names}
        return cls(**(values | overrides))

    def __post_init__(self):
        if not 0 <= self.sup_weight <= 1:
            raise EntangleValueError(f"sup_weight must be in [0, 1], got {self.sup_weight}")
        temps = {
            "student_temperature": self.student_temperature,
            "warmup_teacher_temperature": self.warmup_teacher_temperature,
            "teacher_temperature": self.teacher_temperature,
            "supcon_temperature": self.supcon_temperature,
            "infonce_temperature": self.infonce_temperature,
        }
        for name, value in temps.items():
            if not value > 0:
                raise EntangleValueError(f"{name} must be > 0, got {value}")
        if self.warmup_teacher_epochs < 0 or self.memax_weight < 0:
            raise EntangleValueError(
                "warmup_teacher_epochs and memax_weight must be >= 0, got "
                f"{self.warmup_teacher_epochs} and {self.memax_weight}"
            )


def teacher_temperature_at(epoch: float, config: LossConfig) -> float:
    """Teacher temperature at ``epoch`` (0-based, may be fractional).

    SimGCD's schedule (``DistillLoss``): at integer epochs the values of
    ``numpy.linspace(start, end, W)`` for the first ``W = warmup_teacher_epochs`` epochs, then
    ``end``; linear in between for fractional epochs. ``W == 1`` gives ``start`` for epoch 0
    only (``linspace`` of one point is its start), ``W == 0`` no warm-up at all.
    """
    warmup = config.warmup_teacher_epochs
    start, end = config.warmup_teacher_temperature, config.teacher_temperature
    epoch = max(float(epoch), 0.0)
    if warmup == 1:
        return start if epoch < 1 else end
    if warmup < 1 or epoch >= warmup - 1:
        return end
    return start + (end - start) * epoch / (warmup - 1)


def _masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over rows where ``mask``; exactly 0 (zero gradient) when none is."""
    w = mask.to(values.dtype)
    # torch.where keeps a NaN/inf in a masked-out row from leaking into the sum or gradient
    return torch.where(mask, values, torch.zeros_like(values)).sum() / w.sum().clamp_min(1.0)


def cross_entropy_labeled(logits, labels, labeled, temperature: float) -> torch.Tensor:
    """CE of ``logits / temperature`` ``[m, K]`` on rows where ``labeled`` ``[m]``; 0 if none."""
    safe = torch.where(labeled, labels, torch.zeros_like(labels))
    per_row = F.cross_entropy(logits / temperature, safe, reduction="none")
    return _masked_row_mean(per_row, labeled)


def _contrastive(features, positives, candidates, anchors, temperature: float) -> torch.Tensor:
    """Mean over anchors of the mean over positives of ``-log softmax_candidates(s / tau)``.

    ``features`` ``[m, P]`` are normalised here; ``positives``/``candidates`` ``[m, m]`` bool
    (diagonal excluded by the caller), ``anchors`` ``[m]`` bool.
    """
    z = F.normalize(features, dim=1)
    sim = z @ z.T / temperature
    # a large finite negative instead of -inf: rows with no candidate stay finite
    fill = torch.finfo(sim.dtype).min / 2
    log_prob = sim - torch.logsumexp(sim.masked_fill(~candidates, fill), dim=1, keepdim=True)
    pos = positives.to(sim.dtype)
    per_anchor = (torch.where(positives, log_prob, torch.zeros_like(log_prob))).sum(1)
    per_anchor = -per_anchor / pos.sum(1).clamp_min(1.0)
    return _masked_row_mean(per_anchor, anchors)


def supcon_loss(proj, labels, labeled, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss over labeled rows ``[m, P]`` (``m = 2b``); 0 if none.

    Args:
        proj: ``[m, P]`` projections (normalised inside).
        labels: ``[m]`` classes (read only where ``labeled``).
        labeled: ``[m]`` bool.
    """
    m = proj.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=proj.device)
    both = labeled[:, None] & labeled[None, :] & ~eye
    same = labels[:, None] == labels[None, :]
    return _contrastive(proj, both & same, both, labeled, temperature)


def info_nce_loss(proj, temperature: float = 1.0) -> torch.Tensor:
    """SimCLR InfoNCE over ``[2b, P]`` stacked views: row i's positive is row ``(i + b) % 2b``."""
    m = proj.shape[0]
    b = m // 2
    idx = torch.arange(m, device=proj.device)
    eye = idx[:, None] == idx[None, :]
    partner = idx[None, :] == ((idx + b) % m)[:, None]
    anchors = torch.ones(m, dtype=torch.bool, device=proj.device)
    return _contrastive(proj, partner, ~eye, anchors, temperature)


def self_distillation_loss(logits, student_temperature: float, teacher_temperature: float):
    """Cross-view distillation over ``[2b, K]`` stacked views, mean of both directions.

    Teacher = ``softmax(logits.detach() / teacher_temperature)`` of one view, student =
    ``log_softmax(logits / student_temperature)`` of the other.
    """
    b = logits.shape[0] // 2
    teacher = torch.softmax(logits.detach() / teacher_temperature, dim=1)
    log_student = torch.log_softmax(logits / student_temperature, dim=1)
    # swap the halves: student row i of view v learns from the same sample's other view
    teacher_swapped = torch.cat([teacher[b:], teacher[:b]])
    return -(teacher_swapped * log_student).sum(1).mean()


def mean_entropy_gap(logits, student_temperature: float) -> torch.Tensor:
    """``log K - H(mean softmax(logits / tau))`` over all rows ``[m, K]``; >= 0."""
    p_mean = torch.softmax(logits / student_temperature, dim=1).mean(0)
    entropy = -(p_mean * torch.log(p_mean.clamp_min(1e-12))).sum()
    return math.log(logits.shape[1]) - entropy


def gcd_losses(proj, logits, labels, labeled, *, epoch: float, config: LossConfig | None = None):
    """SimGCD's objective split into supervised and unsupervised scalars.

    Args:
        proj: ``[2b, P]`` projections, view 1 rows then view 2 rows.
        logits: ``[2b, K]`` classifier logits, same row order.
        labels: ``[b]`` int64 classes (only read where ``labeled``; may hold -1 elsewhere).
        labeled: ``[b]`` bool.
        epoch: current epoch (0-based, fractional allowed) for the teacher temperature.
        config: ``LossConfig`` (defaults to SimGCD's values).

    Returns:
        ``(sup, unsup, parts)``: two scalar tensors with gradients, and ``parts`` a dict of
        detached scalar tensors ``ce``, ``supcon``, ``distill``, ``memax``, ``infonce``
        (unweighted) plus the float ``teacher_temperature``. The training loss is
        ``sup + unsup``.
    """
    config = config or LossConfig()
    m = logits.shape[0]
    if logits.ndim != 2 or proj.ndim != 2 or proj.shape[0] != m or m % 2:
        raise EntangleValueError(
            f"gcd_losses: proj [2b, P] and logits [2b, K] must stack both views with the same "
            f"even number of rows, got {tuple(proj.shape)} and {tuple(logits.shape)}"
        )
    b = m // 2
    if labels.shape != (b,) or labeled.shape != (b,):
        raise EntangleValueError(
            f"gcd_losses: labels and labeled must be [b] = [{b}] (one per sample, not per "
            f"view), got {tuple(labels.shape)} and {tuple(labeled.shape)}"
        )
    labeled = labeled.bool()
    labels2, labeled2 = labels.repeat(2), labeled.repeat(2)
    t_teacher = teacher_temperature_at(epoch, config)

    ce = cross_entropy_labeled(logits, labels2, labeled2, config.student_temperature)
    supcon = supcon_loss(proj, labels2, labeled2, config.supcon_temperature)
    distill = self_distillation_loss(logits, config.student_temperature, t_teacher)
    memax = mean_entropy_gap(logits, config.student_temperature)
    infonce = info_nce_loss(proj, config.infonce_temperature)

    w = config.sup_weight
    sup = w * (ce + supcon)
    unsup = (1 - w) * (distill + config.memax_weight * memax + infonce)
    parts = {
        "ce": ce.detach(),
        "supcon": supcon.detach(),
        "distill": distill.detach(),
        "memax": memax.detach(),
        "infonce": infonce.detach(),
        "teacher_temperature": t_teacher,
    }
    return sup, unsup, parts
