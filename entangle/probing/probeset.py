"""ProbeSet: SOC and known-subspace energy over a fixed set of samples, cheaply and exactly.

The paper's diagnostics re-embed the whole training set whenever SOC is due. A ProbeSet runs
the frozen prefix (stem + frozen leading blocks) once, caches its output, and re-runs only the
trainable suffix when asked; the numbers equal a full re-embedding of the same set because the
prefix cannot change (its weights are verified unchanged before each use).
"""

from __future__ import annotations

import torch

from entangle.defaults import APERTURE, SOC_K
from entangle.errors import EntangleValueError
from entangle.metrics._tensors import compute_dtype
from entangle.metrics.energy import ConceptorFactors
from entangle.metrics.subspace import soc_and_angles
from entangle.nn.modes import eval_mode
from entangle.nn.prefix import (
    check_protocol,
    first_trainable_block,
    prefix_fingerprint,
    run_prefix,
    suffix_features,
)
from entangle.probing.summaries import QUANTILES, masked_summary, to_host

EXACT_FALLBACK = (
    "pass exact=True to re-embed the whole probe set with backbone(x) at each evaluation "
    "(same numbers, no cache)"
)


class ProbeSet:
    """A fixed probe set whose SOC and energies are evaluated every ``every`` steps.

    The two cadences: a :class:`~entangle.probing.probe.Probe` with ``every=p`` records
    training steps
    0, p, 2p, ...; a ProbeSet with ``every=e`` is due at the recorded steps whose window
    ``(step - p, step]`` holds a multiple of e (:meth:`is_due`). Its results therefore land on
    recorded steps only: no evaluation is paid for and then dropped, and the rate stays about
    one evaluation every e steps (with p = 1: exactly steps 0, e, 2e, ...). The one way to
    record them is ``Probe(..., probeset=this)``, which evaluates on due probed steps and
    stores the result under the step record's ``probeset`` key (see docs/records.md).

    The ProbeSet keeps ``backbone`` (the live model, not a copy): :meth:`evaluate` without
    an argument evaluates it with its current weights.

    Args:
        backbone: a backbone :mod:`entangle.nn.splits` can cut (entangle's protocol, timm
            ``VisionTransformer``, DINO / DINOv2 hub ViTs); any module with ``exact=True``.
        inputs: ``[N, ...]`` probe-set inputs (labeled and unlabeled samples).
        labeled: ``[N]`` bool, labeled (known-class) samples: Z_old.
        novel: ``[N]`` bool, unlabeled samples whose true class is novel: Z_new.
        split_at: first block to re-run; default: the backbone's first trainable block
            (SimGCD's ``grad_from_block``).
        exact: re-embed from the raw inputs every time (no cache), e.g. for a trainable stem.
        every: evaluation cadence in training steps (see above and :meth:`is_due`).
        k: SOC subspace dimension (the paper: 16).
        aperture: aperture of the probe set's own conceptor, refitted on the probe set's
            labeled features at each evaluation (not EEP's conceptor).
        batch_size: rows per suffix forward.
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        inputs: torch.Tensor,
        labeled: torch.Tensor,
        novel: torch.Tensor,
        *,
        split_at: int | None = None,
        exact: bool = False,
        every: int = 100,
        k: int = SOC_K,
        aperture: float = APERTURE,
        batch_size: int = 256,
    ) -> None:
        n = inputs.shape[0]
        for name, mask in (("labeled", labeled), ("novel", novel)):
            if mask.ndim != 1 or mask.shape[0] != n:
                raise EntangleValueError(
                    f"ProbeSet: {name} has shape {tuple(mask.shape)} but inputs have {n} rows"
                )
        self.labeled = labeled.bool().cpu()
        self.novel = novel.bool().cpu() & ~self.labeled
        if not self.labeled.any() or not self.novel.any():
            raise EntangleValueError(
                "ProbeSet needs labeled samples and unlabeled novel-class samples; got "
                f"{int(self.labeled.sum())} labeled and {int(self.novel.sum())} novel"
            )
        self.every, self.k, self.aperture, self.batch_size = every, k, aperture, batch_size
        self.exact = exact
        if exact:
            self.split_at = 0
        elif split_at is None:
            self.split_at = first_trainable_block(backbone, fallback=EXACT_FALLBACK)
        else:
            check_protocol(backbone, fallback=EXACT_FALLBACK)
            self.split_at = int(split_at)
        self.inputs = inputs
        self.backbone = backbone
        self._fingerprint = None
        self._cache = None if exact else self._embed_prefix(backbone)

    def _embed_prefix(self, backbone) -> torch.Tensor:
        cache = _in_batches(
            backbone, self.inputs, self.batch_size, lambda x: run_prefix(backbone, x, self.split_at)
        )
        self._fingerprint = prefix_fingerprint(backbone, self.split_at)
        return cache

    def is_due(self, step: int, probe_every: int = 1) -> bool:
        """Whether ``evaluate`` should run at ``step``, a step recorded every ``probe_every``.

        True when a multiple of ``every`` lies in ``(step - probe_every, step]``: each
        multiple of ``every`` is served by the first recorded step at or after it. Stateless,
        so a resumed run evaluates at the same steps.
        """
        if step < 0:
            return False
        probe_every = max(int(probe_every), 1)
        # floor division: step 0 is always due ((0 - p) // e is negative)
        return step // self.every > (step - probe_every) // self.every

    def features(self, backbone: torch.nn.Module | None = None) -> torch.Tensor:
        """Current features ``[N, D]`` of the probe set (cached prefix + live suffix).

        Args:
            backbone: the model to embed with; default: the one the ProbeSet was built on.
        """
        backbone = self.backbone if backbone is None else backbone
        if self.exact:
            return full_embedding(backbone, self.inputs, self.batch_size)
        if prefix_fingerprint(backbone, self.split_at) != self._fingerprint:
            # the prefix was modified in place (or replaced): the cache is stale
            self._cache = self._embed_prefix(backbone)
        return _in_batches(
            backbone,
            self._cache,
            self.batch_size,
            lambda h: suffix_features(backbone, h, self.split_at),
        )

    def evaluate(self, backbone: torch.nn.Module | None = None) -> dict:
        """SOC, principal angles and energy summaries of the probe set under ``backbone``.

        Args:
            backbone: default: the model the ProbeSet was built on, with its current weights.

        Returns:
            dict of Python values: ``soc``, ``principal_angles`` (radians, k values),
            ``energy`` {labeled, unlabeled_old, unlabeled_new: summary},
            ``conceptor`` {source, quota, effective_rank, aperture}, ``k`` (see
            docs/records.md).
        """
        z = self.features(backbone)
        # half precision is promoted; float64 stays float64 (small principal angles are
        # ill-conditioned, so a float32 round trip alone moves them by ~1e-5)
        z = z.to(compute_dtype(z.dtype))
        return summarize_subspace(
            z, self.labeled.to(z.device), self.novel.to(z.device), self.k, self.aperture
        )


# what summarize_subspace's conceptor is fitted on, recorded beside its energies
REFIT_SOURCE = "refit on the labeled rows of these features"


def nan_subspace_summary(labeled, novel, k: int, aperture: float, reason: str) -> dict:
    """:func:`summarize_subspace`'s record with every quantity NaN and ``nan_reason`` set,
    for features that hold non-finite values (the decompositions cannot run on them)."""
    nan = float("nan")
    labeled, novel = labeled.cpu(), novel.cpu()
    groups = {"labeled": labeled, "unlabeled_old": ~labeled & ~novel, "unlabeled_new": novel}
    stats = ("mean", "std", *(f"q{round(q * 100)}" for q in QUANTILES))
    return {
        "soc": nan,
        "principal_angles": [nan] * int(k),
        "energy": {g: {**dict.fromkeys(stats, nan), "n": int(m.sum())} for g, m in groups.items()},
        "conceptor": {
            "source": REFIT_SOURCE,
            "aperture": float(aperture),
            "quota": nan,
            "effective_rank": nan,
        },
        "k": int(k),
        "nan_reason": reason,
    }


def summarize_subspace(z, labeled, novel, k: int = SOC_K, aperture: float = APERTURE) -> dict:
    """SOC / principal angles / energy of features ``[N, D]`` with labeled and novel masks.

    The energies use a conceptor refitted on ``z[labeled]`` with ``aperture`` (named so in
    ``conceptor.source``); it is not EEP's conceptor. Formulas: docs/quantities.md.

    Args:
        z: ``[N, D]`` features.
        labeled: ``[N]`` bool, Z_old rows.
        novel: ``[N]`` bool, Z_new rows.
        k: SOC / principal-angle subspace dimension.
        aperture: conceptor aperture.

    Features holding NaN or inf give NaN quantities and ``nan_reason``
    (:func:`nan_subspace_summary`), never an error.
    """
    # checked up front: a thin SVD of non-finite rows may return NaN instead of raising
    if not bool(torch.isfinite(z).all()):
        reason = "the features hold NaN or inf (training diverged?)"
        return nan_subspace_summary(labeled, novel, k, aperture, reason)
    return _summarize_subspace(z, labeled, novel, k, aperture)


def _summarize_subspace(z, labeled, novel, k: int, aperture: float) -> dict:
    # one decomposition per set: the conceptor's factors give the energies and the spectrum, and
    # SOC and the principal angles share the old set's basis (docs/performance.md)
    old, new = z[labeled], z[novel]
    c = ConceptorFactors(old, aperture)
    ratio = c.energy_ratio(z).to(z.dtype)
    unlabeled_old = ~labeled & ~novel
    value, angles = soc_and_angles(old, new, k)
    out = {
        "soc": value,
        "principal_angles": angles,
        "energy": {
            "labeled": masked_summary(ratio, labeled),
            "unlabeled_old": masked_summary(ratio, unlabeled_old),
            "unlabeled_new": masked_summary(ratio, novel),
        },
    }
    spectrum = c.spectrum()
    out = to_host(out)
    out["conceptor"] = {
        "source": REFIT_SOURCE,
        "aperture": float(aperture),
        "quota": spectrum["quota"],
        "effective_rank": spectrum["effective_rank"],
    }
    out["k"] = int(k)
    return out


def full_embedding(backbone, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Features ``[N, D]`` of ``inputs`` by a full forward of ``backbone`` (eval, no grad)."""
    return _in_batches(backbone, inputs, batch_size, backbone)


def _in_batches(backbone, rows: torch.Tensor, batch_size: int, fn) -> torch.Tensor:
    """``fn`` over ``rows`` in batches on the backbone's device, in eval and inference mode."""
    device = _device_of(backbone)
    with eval_mode(backbone), torch.inference_mode():
        chunks = [
            fn(rows[start : start + batch_size].to(device))
            for start in range(0, rows.shape[0], batch_size)
        ]
    return torch.cat(chunks)


def _device_of(module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
