"""The EAGC coordinator: fitting, the per-call correction, accumulation, hooks, persistence.

What one call decided lives in entangle/eagc/state.py, the checks in entangle/eagc/checks.py;
the formula is in entangle/eagc/__init__.py and docs/quantities.md (EAGC).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from contextlib import contextmanager

import torch

from entangle.defaults import AGA_WEIGHT, APERTURE, EEP_WEIGHT
from entangle.eagc.checks import check_inputs
from entangle.eagc.state import _MODES, CoordinationState, _Accumulation, _Coordinate, loss_scale
from entangle.errors import EntangleRuntimeError, EntangleValueError
from entangle.metrics import conceptor as fit_conceptor
from entangle.metrics import energy_ratio
from entangle.metrics._tensors import compute_dtype
from entangle.metrics.calibration import is_auto, resolve_aperture
from entangle.metrics.energy import eep_gate
from entangle.nn.distributed import global_sum, world_size
from entangle.nn.features import reference_features


class EAGC:
    """Energy-Aware Gradient Coordinator.

    Args:
        conceptor: ``[D, D]`` known-subspace conceptor (see :meth:`fit`).
        labeled_energy: initial mu, the mean energy ratio of labeled reference features.
        aga_weight: lambda_AGA; c = lambda_AGA / (N D), N the labeled rows of the call.
        eep_weight: beta, the projection strength.
        momentum: EMA momentum of mu over batches' labeled energy.
        aga, eep: switch either part off (ablations).
        adaptive: energy-adaptive coefficient (True) or the fixed w_i = beta (False).

    Example:
        >>> eagc = EAGC.fit(reference_backbone, labeled_loader)          # doctest: +SKIP
        >>> z = eagc.coordinate(backbone(x), labeled, reference=z_ref)   # doctest: +SKIP
        >>> (sup + unsup).backward()                                     # doctest: +SKIP
    """

    def __init__(
        self,
        conceptor: torch.Tensor,
        labeled_energy: float | torch.Tensor,
        *,
        aga_weight: float = AGA_WEIGHT,
        eep_weight: float = EEP_WEIGHT,
        momentum: float = 0.95,
        aga: bool = True,
        eep: bool = True,
        adaptive: bool = True,
    ) -> None:
        if conceptor.ndim != 2 or conceptor.shape[0] != conceptor.shape[1]:
            raise EntangleValueError(
                f"conceptor must be a square [D, D] tensor, got {tuple(conceptor.shape)}"
            )
        if not 0 <= momentum < 1:
            raise EntangleValueError(f"momentum must be in [0, 1), got {momentum}")
        self.conceptor = conceptor.detach().to(compute_dtype(conceptor.dtype))
        # mu is one number: keep it in float64 so long EMA chains do not drift
        self.mu = torch.as_tensor(labeled_energy, dtype=torch.float64, device=conceptor.device)
        self.mu = self.mu.detach().clone().reshape(())
        self.aga_weight = float(aga_weight)
        self.eep_weight = float(eep_weight)
        self.momentum = float(momentum)
        self.aga = aga
        self.eep = eep
        self.adaptive = adaptive
        self._recent: list[tuple[weakref.ref, CoordinationState]] = []
        self._accumulation: _Accumulation | None = None
        self._hooks: list = []
        self._pending: tuple | None = None
        # EEP weights of the last coordinate call: the authors' diagnostic projects with them
        self._last_weights: torch.Tensor | None = None
        self.aperture: float | None = None  # set by fit / from_features

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        reference: torch.nn.Module,
        labeled_loader: Iterable,
        *,
        aperture: float | str = APERTURE,
        unlabeled_loader: Iterable | None = None,
        feature_fn=None,
        device: torch.device | str | None = None,
        **kwargs,
    ) -> EAGC:
        """Build the conceptor and the initial mu from a reference model's labeled features.

        Give loaders with the **test transform** (no augmentation), as the authors fit the
        conceptor on ``labeled_eval_loader``: augmented views spread the labeled features
        and change C and mu.

        Args:
            reference: frozen reference model (labeled-only training, like the paper).
            labeled_loader: iterable of batches; a batch is an input tensor or a tuple whose
                first item is the input (a list of views is concatenated). A batch carrying
                SimGCD's ``mask_lab`` as its 4th item ``(x, labels, uq_idxs, mask_lab)``
                contributes only its labeled rows, so SimGCD's merged train loader does not
                put unlabeled rows into the conceptor.
            aperture: conceptor aperture a (paper scripts: 2.0); ``"auto"``: the aperture
                maximising the labeled-minus-unlabeled energy gap (needs
                ``unlabeled_loader``); ``"jaeger"``: Jaeger's criterion on the labeled
                features alone (docs/calibration.md). The value used is ``eagc.aperture``.
            unlabeled_loader: batches of unlabeled inputs for ``aperture="auto"`` (a batch
                with ``mask_lab`` contributes its unlabeled rows); read only for ``"auto"``.
            feature_fn: ``feature_fn(reference, x) -> [n, D]``; default ``reference(x)``.
            device: where to run the reference (default: its parameters' device).
            **kwargs: forwarded to :class:`EAGC` (weights, switches).
        """
        features = reference_features(reference, labeled_loader, feature_fn, device)
        unlabeled = None
        if is_auto(aperture) and unlabeled_loader is not None:
            unlabeled = reference_features(
                reference, unlabeled_loader, feature_fn, device, rows="unlabeled"
            )
        return cls.from_features(features, aperture=aperture, unlabeled=unlabeled, **kwargs)

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor,
        *,
        aperture: float | str = APERTURE,
        unlabeled: torch.Tensor | None = None,
        **kwargs,
    ):
        """:meth:`fit` on precomputed labeled reference features ``[N, D]``.

        ``unlabeled`` ``[M, D]`` (the reference's unlabeled features) is needed by
        ``aperture="auto"`` and unused otherwise.
        """
        resolved = resolve_aperture(aperture, features, unlabeled)
        c = fit_conceptor(features, resolved)
        mu = energy_ratio(features, c).nanmean()
        eagc = cls(c, mu, **kwargs)
        eagc.aperture = resolved
        return eagc

    # ------------------------------------------------------------------ the correction
    def _state(self, features, labeled, reference, *, update: bool, scale) -> CoordinationState:
        m = check_inputs(self.conceptor, features, labeled, reference)
        dtype = compute_dtype(features.dtype)
        conceptor = self.conceptor.to(features.device, dtype)
        # under torch.autocast, no_grad alone would still run z @ C in half precision
        no_autocast = torch.autocast(features.device.type, enabled=False)
        with torch.no_grad(), no_autocast:
            z = features.detach().to(dtype)
            weights = energy = aga = None
            if self.eep:
                energy = energy_ratio(z, conceptor, warn=False)
                if update:
                    self._update_mu(energy, m)
                if self.adaptive:
                    mu = self.mu.to(z.device, dtype)
                    weights = self.eep_weight * eep_gate(energy, mu)
                else:
                    weights = torch.full_like(energy, self.eep_weight)
                weights = weights * (~m).to(dtype)
            if self.aga and reference is not None:
                n_labeled = global_sum(m.sum().to(dtype))
                # DDP averages parameter gradients over ranks; the AGA loss is a sum over the
                # global batch, so each rank's share is multiplied back by the world size
                # under accumulate(k), each of k equal micro-batches carries 1/k of the step
                k = self._accumulation.micro_batches if self._accumulation else 1
                c = self.aga_weight * world_size() / (k * n_labeled.clamp_min(1.0) * z.shape[1])
                aga = c * m[:, None].to(dtype) * (z - reference.detach().to(dtype))
        mu_now = self.mu.detach().clone()  # a device scalar: no host sync
        return CoordinationState(weights, aga, conceptor, energy, scale, mu=mu_now)

    def _update_mu(self, energy: torch.Tensor, labeled: torch.Tensor) -> None:
        # a where, not energy[labeled]: a boolean-mask index is a host sync (its size)
        e = torch.where(labeled, torch.nan_to_num(energy, nan=0.0), 0.0)
        total = global_sum(torch.stack([e.sum(), labeled.sum().to(e.dtype)]).double())
        if self._accumulation is not None:
            # one EMA move per optimiser step, applied when accumulate() exits
            self._accumulation.add(total)
            return
        self._apply_ema(total)

    def _apply_ema(self, total: torch.Tensor) -> None:
        """Move mu towards ``total[0] / total[1]`` (labeled energy sum / count), if any."""
        batch_mean = total[0] / total[1].clamp_min(1.0)
        mu = self.mu.to(total.device)
        updated = self.momentum * mu + (1.0 - self.momentum) * batch_mean
        # no labeled rows in this call: keep mu (branch-free, no host sync)
        self.mu = torch.where(total[1] > 0, updated, mu)

    def coordinate(
        self,
        features: torch.Tensor,
        labeled: torch.Tensor,
        reference: torch.Tensor | None = None,
        *,
        scaler=None,
    ) -> torch.Tensor:
        """Identity in forward; in backward, correct each row's gradient (docs/quantities.md, EAGC).

        Args:
            features: ``[n, D]`` the feature tensor (backbone output) the losses use.
            labeled: ``[n]`` bool, True for labeled rows.
            reference: ``[n, D]`` frozen reference-model features of the same inputs; AGA is
                skipped without it.
            scaler: a ``torch.amp.GradScaler`` when the loss will be scaled, so the AGA term
                is added in the units of the incoming (scaled) gradient. Give the same
                scaler to ``probe.backward`` (a Probe refuses a mismatch either way).

        Returns:
            ``[n, D]`` tensor equal to ``features``; mu is updated by this call's labeled rows.
        """
        if not features.requires_grad:
            return features
        scale = loss_scale(scaler, features.device)
        scaled, scale = scale is not None, 1.0 if scale is None else scale
        state = self._state(features, labeled, reference, update=True, scale=scale)
        state.scaled = scaled
        previous = self._last_weights
        if previous is not None and previous.shape == features.shape[:1]:
            # row i of the previous batch's weights on row i of this one, as the authors'
            # hook does (docs/quantities.md, "The authors' diagnostic")
            state.previous_weights = previous.to(features.device)
        self._last_weights = state.weights
        out = _Coordinate.apply(features, state)
        self._remember(out, state)
        return out

    def correct(
        self,
        grad: torch.Tensor,
        features: torch.Tensor,
        labeled: torch.Tensor,
        reference: torch.Tensor | None = None,
        *,
        mode: str = "full",
    ) -> torch.Tensor:
        """The same transform as a pure function, with the current mu (not updated).

        Args:
            grad: ``[n, D]`` gradient of the loss with respect to ``features``.
            features, labeled, reference: as in :meth:`coordinate`.
            mode: ``"full"`` P(g) + AGA, ``"linear"`` P(g) only.

        Returns:
            ``[n, D]`` corrected gradient, in ``grad``'s dtype.
        """
        if grad.shape != features.shape:
            raise EntangleValueError(
                f"EAGC.correct: grad has shape {tuple(grad.shape)} but features "
                f"{tuple(features.shape)}"
            )
        return self._state(features, labeled, reference, update=False, scale=1.0).transform(
            grad, mode
        )

    def state_for(self, output: torch.Tensor) -> CoordinationState | None:
        """The state of the ``coordinate`` call that returned ``output`` (None if unknown).

        Read-only for callers: its backward mode changes only through :meth:`measuring`.
        """
        for ref, state in self._recent:
            if ref() is output:
                return state
        return None

    @contextmanager
    def measuring(self, state: CoordinationState | None, mode: str):
        """Inside, backwards through the call of ``state`` apply ``mode`` instead of ``"full"``.

        The Probe's way to take raw (``"identity"``), corrected (``"full"``) and the authors'
        (``"authors"``) per-loss gradients of one coordinated step; the previous mode comes
        back on exit, also on an exception. ``state`` None (no EAGC on this step): a no-op.
        """
        if state is None:
            yield
            return
        if mode not in _MODES:
            raise EntangleValueError(f"unknown coordination mode {mode!r}; one of {_MODES}")
        previous = state.mode
        state.mode = mode
        try:
            yield
        finally:
            state.mode = previous

    def _remember(self, out: torch.Tensor, state: CoordinationState) -> None:
        self._recent = [(r, s) for r, s in self._recent if r() is not None][-7:]
        self._recent.append((weakref.ref(out), state))

    @contextmanager
    def accumulate(self, micro_batches: int):
        """Treat the ``coordinate`` calls inside as micro-batches of one optimiser step.

        Inside, every call's EEP weights use the mu carried into the step, mu moves once on
        exit with the step's labeled energy mean, and the AGA coefficient is divided by
        ``micro_batches`` (as the losses are) — so k equal micro-batches give exactly the
        gradient of one ``accumulate(1)`` call on the whole batch.

        Note: a plain ``coordinate`` call (outside this block) follows docs/quantities.md
        literally: mu first moves with the call's labeled energy, then the weights use it.
        No order can give both that and exact micro-batch equivalence (the first micro-batch
        cannot see the second's energies), so ``accumulate(1)`` differs from a plain call by
        when mu moves.

        Args:
            micro_batches: number of backward calls accumulated before the optimiser step.
        """
        if self._accumulation is not None:
            raise EntangleRuntimeError("EAGC.accumulate() blocks cannot be nested")
        if int(micro_batches) < 1:
            raise EntangleValueError(f"micro_batches must be >= 1, got {micro_batches}")
        self._accumulation = _Accumulation(int(micro_batches))
        try:
            yield self
        finally:
            pending, self._accumulation = self._accumulation, None
            if pending.total is not None:
                self._apply_ema(pending.total)

    # ------------------------------------------------------------------ hook form
    def attach(self, module: torch.nn.Module) -> EAGC:
        """Coordinate ``module``'s output inside ``with eagc.batch(...)`` blocks.

        For loops that cannot call :meth:`coordinate`. Refuses to attach twice; nothing is
        stored on the module; use ``detach()`` or ``with eagc.attach(module):``.
        """
        if self._hooks:
            raise EntangleRuntimeError("EAGC is already attached to a module; call detach() first")
        self._hooks.append(module.register_forward_hook(self._forward_hook))
        return self

    def detach(self) -> None:
        """Remove the forward hook (idempotent)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def __enter__(self) -> EAGC:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    @contextmanager
    def batch(self, labeled: torch.Tensor, reference: torch.Tensor | None = None, *, scaler=None):
        """Give the attached hook this batch's labeled mask and reference features."""
        previous = self._pending
        self._pending = (labeled, reference, scaler)
        try:
            yield self
        finally:
            self._pending = previous

    def _forward_hook(self, module, inputs, output):
        # a removed hook can still fire on a graph being built; outside a batch: identity
        if not self._hooks or self._pending is None or not torch.is_grad_enabled():
            return None
        labeled, reference, scaler = self._pending
        return self.coordinate(output, labeled, reference, scaler=scaler)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """mu, the conceptor and the settings, so a resumed run continues identically."""
        return {
            "conceptor": self.conceptor.cpu(),
            "mu": self.mu.detach().cpu(),
            "aga_weight": self.aga_weight,
            "eep_weight": self.eep_weight,
            "momentum": self.momentum,
            "aga": self.aga,
            "eep": self.eep,
            "adaptive": self.adaptive,
            "last_weights": None if self._last_weights is None else self._last_weights.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (tensors keep this object's device)."""
        device = self.conceptor.device
        self.conceptor = state["conceptor"].to(device)
        self.conceptor = self.conceptor.to(compute_dtype(self.conceptor.dtype))
        self.mu = state["mu"].to(device, torch.float64).reshape(())
        for key in ("aga_weight", "eep_weight", "momentum", "aga", "eep", "adaptive"):
            setattr(self, key, state[key])
        last = state.get("last_weights")  # absent in states saved before it was kept
        self._last_weights = None if last is None else last.to(device)

    def __repr__(self) -> str:
        parts = [f"D={self.conceptor.shape[0]}", f"mu={float(self.mu):.4f}"]
        parts.append(f"aga={self.aga_weight if self.aga else 'off'}")
        eep = f"{self.eep_weight}{'' if self.adaptive else ' fixed'}" if self.eep else "off"
        parts.append(f"eep={eep}")
        return f"EAGC({', '.join(parts)})"
