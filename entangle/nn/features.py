"""A model's features over a loader, as EAGC and the recipe fit conceptors from them."""

from __future__ import annotations

import torch

from entangle.errors import EntangleValueError
from entangle.nn.modes import eval_mode


def reference_features(model, loader, feature_fn=None, device=None, rows="labeled"):
    """Features ``[N, D]`` of every batch of ``loader`` under ``model`` (inference mode).

    A batch is an input tensor, or a tuple whose first item is the input (a list of views
    is concatenated). A tuple of 4 or more items carries SimGCD's ``mask_lab`` as its 4th
    (``[B]`` or ``[B, 1]``, 0/1): only the rows ``rows`` names are kept, ``"labeled"`` (the
    conceptor's) or ``"unlabeled"``; without it every row is kept.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    chunks = []
    with eval_mode(model), torch.inference_mode():
        for batch in loader:
            x = batch[0] if isinstance(batch, list | tuple) else batch
            views = len(x) if isinstance(x, list | tuple) else 1
            if isinstance(x, list | tuple):
                # SimGCD-style batches hold a list of views: embed them all
                x = torch.cat(list(x))
            keep = None
            if isinstance(batch, list | tuple) and len(batch) >= 4:
                keep = _mask_lab(batch[3], x.shape[0] // views).repeat(views)
                if rows == "unlabeled":
                    keep = ~keep
                if not bool(keep.any()):
                    continue
            x = x.to(device)
            z = feature_fn(model, x) if feature_fn is not None else model(x)
            if keep is not None:
                z = z[keep.to(z.device)]
            chunks.append(z.float())
    if not chunks:
        raise EntangleValueError(
            f"the loader yielded no {rows} rows; cannot fit a conceptor (a batch's 4th item is "
            "read as SimGCD's mask_lab)"
        )
    return torch.cat(chunks)


def _mask_lab(mask, n: int) -> torch.Tensor:
    """SimGCD's ``mask_lab`` (``[B]`` or ``[B, 1]`` of 0/1) as a ``[B]`` bool tensor."""
    m = torch.as_tensor(mask)
    if m.ndim == 2 and m.shape[1] >= 1:
        m = m[:, 0]  # SimGCD's loader gives [B, 1]
    if m.ndim != 1 or m.shape[0] != n or not bool(((m == 0) | (m == 1)).all()):
        raise EntangleValueError(
            f"a batch's 4th item is read as SimGCD's mask_lab ([{n}] or [{n}, 1] of 0/1), got "
            f"shape {tuple(m.shape)}; pass (x, labels, uq_idxs, mask_lab) batches or drop the "
            "extra items"
        )
    return m.bool().cpu()
