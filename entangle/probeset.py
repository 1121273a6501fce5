"""ProbeSet: SOC and known-subspace energy over a fixed set of samples, cheaply and exactly.

The paper's diagnostics re-embed the whole training set whenever SOC is due. A ProbeSet runs
the frozen prefix (stem + frozen leading blocks) once, caches its output, and re-runs only the
trainable suffix when asked; the numbers equal a full re-embedding of the same set because the
prefix cannot change (its weights are verified unchanged before each use).
"""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError
from entangle.metrics import conceptor, conceptor_spectrum, energy_ratio, principal_angles, soc
from entangle.metrics._tensors import compute_dtype
from entangle.modes import eval_mode
from entangle.prefix import (
    check_protocol,
    first_trainable_block,
    prefix_fingerprint,
    run_prefix,
    run_suffix,
)
from entangle.summaries import masked_summary, to_host

EXACT_FALLBACK = (
    "pass exact=True to re-embed the whole probe set with backbone(x) at each evaluation "
    "(same numbers, no cache)"
)


class ProbeSet:
    """A fixed probe set whose SOC and energies are evaluated every ``every`` steps.

    Args:
        backbone: a backbone :mod:`entangle.splits` can cut (entangle's protocol, timm
            ``VisionTransformer``, DINO / DINOv2 hub ViTs); any module with ``exact=True``.
        inputs: ``[N, ...]`` probe-set inputs (labeled and unlabeled samples).
        labeled: ``[N]`` bool, labeled (known-class) samples: Z_old.
        novel: ``[N]`` bool, unlabeled samples whose true class is novel: Z_new.
        split_at: first block to re-run; default: the backbone's first trainable block
            (SimGCD's ``grad_from_block``).
        exact: re-embed from the raw inputs every time (no cache), e.g. for a trainable stem.
        every: evaluation cadence in steps for :meth:`is_due`.
        k: SOC subspace dimension.
        aperture: conceptor aperture for energy ratios.
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
        k: int = 16,
        aperture: float = 2.0,
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
        self._fingerprint = None
        self._cache = None if exact else self._embed_prefix(backbone)

    def _embed_prefix(self, backbone) -> torch.Tensor:
        cache = _in_batches(
            backbone, self.inputs, self.batch_size, lambda x: run_prefix(backbone, x, self.split_at)
        )
        self._fingerprint = prefix_fingerprint(backbone, self.split_at)
        return cache

    def is_due(self, step: int) -> bool:
        """Whether ``evaluate`` should run at ``step``."""
        return step % self.every == 0

    def features(self, backbone: torch.nn.Module) -> torch.Tensor:
        """Current features ``[N, D]`` of the probe set (cached prefix + live suffix)."""
        if self.exact:
            return full_embedding(backbone, self.inputs, self.batch_size)
        if prefix_fingerprint(backbone, self.split_at) != self._fingerprint:
            # the prefix was modified in place (or replaced): the cache is stale
            self._cache = self._embed_prefix(backbone)
        return _in_batches(
            backbone, self._cache, self.batch_size, lambda h: run_suffix(backbone, h, self.split_at)
        )

    def evaluate(self, backbone: torch.nn.Module) -> dict:
        """SOC, principal angles and energy summaries of the probe set under ``backbone``.

        Returns:
            dict of Python values: ``soc``, ``principal_angles`` (radians, k values),
            ``energy`` {labeled, unlabeled_old, unlabeled_new: summary},
            ``conceptor`` {quota, effective_rank}.
        """
        z = self.features(backbone)
        # half precision is promoted; float64 stays float64 (small principal angles are
        # ill-conditioned, so a float32 round trip alone moves them by ~1e-5)
        z = z.to(compute_dtype(z.dtype))
        return summarize_subspace(
            z, self.labeled.to(z.device), self.novel.to(z.device), self.k, self.aperture
        )


def summarize_subspace(z, labeled, novel, k: int = 16, aperture: float = 2.0) -> dict:
    """SOC / principal angles / energy of features ``[N, D]`` with labeled and novel masks."""
    old, new = z[labeled], z[novel]
    c = conceptor(old, aperture)
    ratio = energy_ratio(z, c, warn=False)
    unlabeled_old = ~labeled & ~novel
    out = {
        "soc": soc(old, new, k),
        "principal_angles": principal_angles(old, new, k),
        "energy": {
            "labeled": masked_summary(ratio, labeled),
            "unlabeled_old": masked_summary(ratio, unlabeled_old),
            "unlabeled_new": masked_summary(ratio, novel),
        },
    }
    spectrum = conceptor_spectrum(c)
    out = to_host(out)
    out["conceptor"] = {"quota": spectrum["quota"], "effective_rank": spectrum["effective_rank"]}
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
