"""Gradient-level coordinators: torchjd's aggregators on the rows [g_sup, g_unsup].

EAGC coordinates the feature gradient inside one backward; the multi-task methods (PCGrad,
CAGrad, MGDA, UPGrad, ...) instead combine the per-loss gradients of the shared parameters.
:class:`GradientCoordinator` computes those two rows every step (one extra backward: the
supervised gradient; the unsupervised row is the training gradient minus it), hands the
``[2, P]`` matrix to a ``torchjd.aggregation`` aggregator and writes the aggregate into
``.grad``. The aggregators are torchjd's (the ``[mtl]`` extra), never reimplemented here.

The rows are the gradients of the recipe's weighted losses, ``w * L_sup`` and
``(1 - w) * L_unsup``. Under AMP they are unscaled before aggregating and the aggregate is
scaled back (the scaler's own unscale and inf check stay valid); a non-finite row leaves the
plain gradient in place so the scaler skips the step. Under DDP the rows are the all-reduced
(mean) gradients, so every rank applies the same update. See docs/coordinators.md.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch

from entangle.errors import EntangleValueError
from entangle.nn.distributed import world_size

# which parameters the aggregator sees (docs/coordinators.md); the rest get the plain sum
PARAM_SETS = ("trainable", "backbone")


@dataclass
class CoordinatorConfig:
    """A gradient-level coordinator's settings (the home of every default below).

    Attributes:
        name: an :data:`AGGREGATORS` name (``pcgrad``, ``cagrad``, ...).
        params: ``"trainable"`` (every trainable backbone parameter and the head, the default)
            or ``"backbone"`` (the trainable backbone only; the head takes the plain sum).
        cagrad_c: CAGrad's c (radius of the ball around the mean gradient; torchjd has no
            default, 0.5 is a middle value of the CAGrad paper's range).
        mgda_epsilon, mgda_max_iters: MGDA's Frank-Wolfe stopping rule (torchjd's defaults).
        alignedmtl_scale_mode: Aligned-MTL's ``"min"``, ``"median"`` or ``"rmse"``.
        nashmtl_max_norm, nashmtl_update_weights_every, nashmtl_optim_niter: Nash-MTL's
            (torchjd's defaults). Its weights are state that a resumed run starts afresh.
        gradvac_beta: GradVac's EMA rate (torchjd's default).
        fairgrad_alpha: FairGrad's alpha (torchjd has no default; 1.0 is its paper's middle).
    """

    name: str = "pcgrad"
    params: str = "trainable"
    cagrad_c: float = 0.5
    mgda_epsilon: float = 0.001
    mgda_max_iters: int = 100
    alignedmtl_scale_mode: str = "min"
    nashmtl_max_norm: float = 1.0
    nashmtl_update_weights_every: int = 1
    nashmtl_optim_niter: int = 20
    gradvac_beta: float = 0.5
    fairgrad_alpha: float = 1.0

    def __post_init__(self):
        if self.name not in AGGREGATORS:
            raise EntangleValueError(
                f"unknown gradient coordinator {self.name!r}; choose one of "
                f"{', '.join(AGGREGATORS)}"
            )
        if self.params not in PARAM_SETS:
            raise EntangleValueError(
                f"coordinator_params must be one of {', '.join(PARAM_SETS)}, got {self.params!r}"
            )

    def aggregator(self):
        """The torchjd aggregator these settings describe.

        Raises:
            EntangleValueError: torchjd (or the solver an aggregator needs) is missing.
        """
        try:
            from torchjd import aggregation as agg  # optional: the [mtl] extra
        except ImportError:
            raise EntangleValueError(
                f"coordinator {self.name!r} needs torchjd: pip install 'entangle[mtl]'"
            ) from None
        return AGGREGATORS[self.name](agg, self)


def _settings(config: CoordinatorConfig, prefix: str) -> dict:
    return {
        f.name[len(prefix) :]: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name.startswith(prefix)
    }


# name -> builder(torchjd.aggregation, settings); what each is: docs/coordinators.md
AGGREGATORS = {
    "sum": lambda a, c: a.Sum(),
    "mean": lambda a, c: a.Mean(),
    "pcgrad": lambda a, c: a.PCGrad(),
    "cagrad": lambda a, c: a.CAGrad(c=c.cagrad_c),
    "mgda": lambda a, c: a.MGDA(**_settings(c, "mgda_")),
    "upgrad": lambda a, c: a.UPGrad(),
    "dualproj": lambda a, c: a.DualProj(),
    "imtlg": lambda a, c: a.IMTLG(),
    "alignedmtl": lambda a, c: a.AlignedMTL(scale_mode=c.alignedmtl_scale_mode),
    "nashmtl": lambda a, c: a.NashMTL(n_tasks=2, **_settings(c, "nashmtl_")),
    "config": lambda a, c: a.ConFIG(),
    "gradvac": lambda a, c: a.GradVac(beta=c.gradvac_beta),
    "fairgrad": lambda a, c: a.FairGrad(alpha=c.fairgrad_alpha),
}


class GradientCoordinator:
    """Replace ``(sup + unsup).backward()`` by an aggregation of the two per-loss gradients.

    Args:
        params: the coordinated parameters (other parameters keep the plain summed gradient).
        config: a :class:`CoordinatorConfig` (its ``params`` field names the set the caller
            passed; the coordinator takes ``params`` as given).
        distributed: all-reduce the rows (default: when more than one process runs).

    Example:
        >>> coord = GradientCoordinator(model.parameters(), CoordinatorConfig("upgrad"))
        >>> coord.backward(sup, unsup)  # doctest: +SKIP
    """

    def __init__(self, params, config: CoordinatorConfig, *, distributed: bool | None = None):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise EntangleValueError("GradientCoordinator needs at least one trainable parameter")
        self.config = config
        self.name = config.name
        self.aggregator = config.aggregator()
        self.distributed = world_size() > 1 if distributed is None else distributed

    def backward(self, sup, unsup, *, scaler=None, sup_grads=None) -> list[torch.Tensor]:
        """Backward of both losses; ``.grad`` of the coordinated parameters gets the aggregate.

        Args:
            sup, unsup: the scalar weighted losses (rows ``w g_sup`` and ``(1-w) g_unsup``).
            scaler: a ``torch.amp.GradScaler``: losses are scaled as in plain AMP training,
                the aggregator sees unscaled rows, the aggregate is scaled back into ``.grad``.
            sup_grads: the already computed (scaled) supervised gradient of each coordinated
                parameter, in order (the probe passes its own, saving the extra backward).

        Returns:
            the applied gradient of each coordinated parameter (scaled units, as in ``.grad``).
        """
        scaled = scaler is not None and scaler.is_enabled()
        scale = lambda loss: scaler.scale(loss) if scaled else loss  # noqa: E731
        if sup_grads is None:
            if sup.requires_grad:
                sup_grads = torch.autograd.grad(
                    scale(sup), self.params, retain_graph=True, allow_unused=True
                )
            else:
                sup_grads = [None] * len(self.params)
        before = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        scale(sup + unsup).backward()  # every other parameter gets its plain gradient here
        total = self._flat([_since(p.grad, b, p) for p, b in zip(self.params, before, strict=True)])
        g_sup = self._flat([_or_zeros(g, p) for g, p in zip(sup_grads, self.params, strict=True)])
        if self.distributed and world_size() > 1:
            # DDP averaged .grad during the backward; autograd.grad is local: average it too
            torch.distributed.all_reduce(g_sup)
            g_sup = g_sup / world_size()
        factor = scaler.get_scale() if scaled else 1.0
        rows = torch.stack([g_sup, total - g_sup]) / factor
        if not bool(torch.isfinite(rows).all()):  # AMP overflow: the scaler skips the step
            return [p.grad for p in self.params]
        with warnings.catch_warnings():
            # cvxpy: Nash-MTL's problem "is not DPP" (re-solves are not faster); not an error
            warnings.filterwarnings("ignore", "You are solving a parameterized problem")
            applied = self.aggregator(rows) * factor
        out, offset = [], 0
        for p, b in zip(self.params, before, strict=True):
            part = applied[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            p.grad = part.clone() if b is None else b + part
            out.append(part)
        return out

    def _flat(self, grads) -> torch.Tensor:
        # half-precision gradients are aggregated in float32; float32 / float64 as they are
        low = (torch.float16, torch.bfloat16)
        return torch.cat(
            [g.reshape(-1).float() if g.dtype in low else g.reshape(-1) for g in grads]
        )


def _since(grad, before, p):
    if grad is None:
        return torch.zeros_like(p)
    return grad if before is None else grad - before


def _or_zeros(g, p):
    return torch.zeros_like(p) if g is None else g
