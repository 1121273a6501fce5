"""Gradient conflict between the supervised and unsupervised parts of a GCD objective.

All functions compute on the inputs' device and return 0-dim or 1-D tensors there, so a
training loop can batch many metrics into one host sync. A zero norm gives NaN (never a
crash); with ``warn=True`` a warning says why (checking costs a host sync on CUDA, so hot
loops pass ``warn=False`` and read NaN reasons after their own sync).
"""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError, warn_degenerate
from entangle.metrics._tensors import GradLike, as_tensor, compute_dtype, pair_flat

CONFLICT_KEYS = ("cos", "gdc", "norm_sup", "norm_unsup", "norm_ratio", "gms", "conflict")


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    nan = torch.full_like(num, float("nan"))
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), nan)


def gradient_conflict(g_sup: GradLike, g_unsup: GradLike, *, warn: bool = True) -> dict:
    """Conflict statistics between a supervised and an unsupervised gradient.

    Args:
        g_sup: gradient of L_sup, a tensor of any shape or a sequence of per-parameter
            tensors (``None`` entries skipped, as in ``[p.grad for p in params]``).
        g_unsup: gradient of L_unsup, laid out like ``g_sup``.
        warn: warn when a norm is zero (the affected values are NaN).

    Returns:
        dict of 0-dim tensors on the inputs' device:
        ``cos`` cos(g_S, g_U); ``gdc`` 1 - cos(g_S, g_S + g_U) in [0, 2]; ``norm_sup`` and
        ``norm_unsup``; ``norm_ratio`` ||g_U|| / ||g_S||; ``gms`` gradient magnitude
        similarity 2||g_S|| ||g_U|| / (||g_S||^2 + ||g_U||^2); ``conflict`` (bool) cos < 0.

    Example:
        >>> stats = gradient_conflict(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
        >>> round(stats["cos"].item(), 4)
        -0.7071
    """
    s, u = pair_flat(g_sup, g_unsup)
    dtype = compute_dtype(torch.promote_types(s.dtype, u.dtype))
    s, u = s.to(dtype), u.to(dtype)
    t = s + u  # summed elementwise: exact where the expanded ||s||^2 + ||u||^2 + 2<s,u> cancels
    stats = conflict_from_products(
        torch.dot(s, s), torch.dot(u, u), torch.dot(s, u), torch.dot(s, t), torch.dot(t, t)
    )
    if warn:
        ns, nu = stats["norm_sup"], stats["norm_unsup"]
        nt = torch.linalg.vector_norm(s + u)
        reason = conflict_nan_reason(float(ns), float(nu), float(nt), s.numel())
        if reason:
            warn_degenerate(f"gradient_conflict: {reason}")
    return stats


def conflict_from_products(
    ss: torch.Tensor,
    uu: torch.Tensor,
    su: torch.Tensor,
    st: torch.Tensor | None = None,
    tt: torch.Tensor | None = None,
) -> dict:
    """:func:`gradient_conflict`'s statistics from inner products alone.

    Lets a caller sum per-parameter products instead of concatenating gradients (the Probe
    does, to avoid copying every probed gradient into one flat buffer).

    Args:
        ss: ``<g_S, g_S>``, 0-dim.
        uu: ``<g_U, g_U>``, 0-dim.
        su: ``<g_S, g_U>``, 0-dim.
        st: ``<g_S, g_T>`` with g_T = g_S + g_U the total (e.g. the captured training
            gradient), 0-dim.
        tt: ``<g_T, g_T>``, 0-dim. With ``st`` and ``tt`` GDC is exact when the two losses
            nearly cancel; without them they are expanded from ``ss, uu, su``, which loses
            every digit once ||g_S + g_U|| is below ~1e-3 ||g_S|| in float32 products.

    Returns:
        the dict of :func:`gradient_conflict` (0-dim tensors).
    """
    ns, nu = ss.clamp_min(0).sqrt(), uu.clamp_min(0).sqrt()
    if st is None or tt is None:
        st, tt = ss + su, ss + uu + 2.0 * su
    nt = tt.clamp_min(0).sqrt()
    cos = _safe_div(su, ns * nu).clamp(-1.0, 1.0)
    return {
        "cos": cos,
        "gdc": 1.0 - _safe_div(st, ns * nt).clamp(-1.0, 1.0),
        "norm_sup": ns,
        "norm_unsup": nu,
        "norm_ratio": _safe_div(nu, ns),
        "gms": _safe_div(2.0 * ns * nu, ss + uu).clamp(0.0, 1.0),
        "conflict": cos < 0,
    }


def conflict_nan_reason(norm_sup: float, norm_unsup: float, norm_total: float, size: int) -> str:
    """Explain, from host-side norms, why some of ``gradient_conflict``'s values are NaN.

    Returns an empty string when every value is finite.
    """
    if size == 0:
        return "no gradient entries (the parameter group received no gradient from either loss)"
    bad = [name for name, v in (("g_sup", norm_sup), ("g_unsup", norm_unsup)) if not v > 0]
    nonfinite = [
        name
        for name, v in (("g_sup", norm_sup), ("g_unsup", norm_unsup))
        if v != v or v in (float("inf"), float("-inf"))
    ]
    if nonfinite:
        return f"{' and '.join(nonfinite)} not finite (NaN or inf loss?); values are NaN"
    if len(bad) == 2:
        return "g_sup and g_unsup have zero norm; cos, GDC, norm_ratio and gms are NaN"
    if bad == ["g_sup"]:
        return "g_sup has zero norm; cos, GDC and norm_ratio are NaN"
    if bad:
        return "g_unsup has zero norm; cos is NaN (GDC, norm_ratio and gms are 0)"
    if not norm_total > 0:
        return "g_sup + g_unsup is zero (the losses cancel exactly); GDC is NaN"
    return ""


def gdc(g_sup: GradLike, g_unsup: GradLike, *, warn: bool = True) -> torch.Tensor:
    """Gradient Deviation Coefficient 1 - cos(g_S, g_S + g_U), in [0, 2].

    Args:
        g_sup, g_unsup: gradients as in :func:`gradient_conflict`.

    Returns:
        0-dim tensor; NaN when ||g_S|| or ||g_S + g_U|| is zero.
    """
    return gradient_conflict(g_sup, g_unsup, warn=warn)["gdc"]


def rowwise_cosine(a: torch.Tensor, b: torch.Tensor, *, warn: bool = True) -> torch.Tensor:
    """Cosine between matching rows, e.g. per-sample feature gradients dL_sup/dz and dL_unsup/dz.

    Args:
        a: ``[n, D]``.
        b: ``[n, D]``.

    Returns:
        ``[n]``; NaN for rows where either side has zero norm (e.g. an unlabeled row receives
        no supervised gradient).
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    if a.shape != b.shape or a.ndim != 2:
        raise EntangleValueError(
            f"rowwise_cosine: expected two [n, D] tensors of the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    dtype = compute_dtype(torch.promote_types(a.dtype, b.dtype))
    a, b = a.to(dtype), b.to(dtype)
    na, nb = torch.linalg.vector_norm(a, dim=1), torch.linalg.vector_norm(b, dim=1)
    cos = _safe_div((a * b).sum(dim=1), na * nb).clamp(-1.0, 1.0)
    if warn:
        n_nan = int(torch.isnan(cos).sum())
        if n_nan:
            warn_degenerate(f"rowwise_cosine: {n_nan} of {cos.numel()} rows have a zero norm (NaN)")
    return cos
