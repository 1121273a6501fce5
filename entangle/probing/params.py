"""Parameter groups the probe measures: a module, a list, or named groups; `last_block`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from entangle.errors import EntangleTypeError, EntangleValueError

BLOCK_CONTAINER_NAMES = ("blocks", "layers", "layer", "stages", "h")


def _trainable(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [p for p in params if p.requires_grad]


def last_block(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters of the module's last block (the paper's default probe group).

    Looks for a block container named ``blocks`` (ViT/timm/DINO naming), ``layers``,
    ``layer``, ``stages`` or ``h``, and takes its last child with trainable parameters; falls
    back to the last top-level child with trainable parameters.

    Args:
        module: the backbone (or any model).

    Returns:
        list of parameters, non-empty.
    """
    containers = [
        child
        for name, child in module.named_modules()
        if name.split(".")[-1] in BLOCK_CONTAINER_NAMES
        and isinstance(child, torch.nn.ModuleList | torch.nn.Sequential)
    ]
    for container in containers:
        for block in reversed(list(container)):
            params = _trainable(block.parameters())
            if params:
                return params
    for child in reversed(list(module.children())):
        params = _trainable(child.parameters())
        if params:
            return params
    params = _trainable(module.parameters(recurse=False))
    if params:
        return params
    raise EntangleValueError(
        f"last_block: {type(module).__name__} has no trainable parameters; unfreeze at least "
        "one block or pass the parameters to probe explicitly"
    )


def parameter_groups(params) -> tuple[dict[str, list[torch.nn.Parameter]], bool]:
    """Normalise what ``Probe(params)`` accepts into named groups.

    Args:
        params: a module (its trainable parameters), a sequence of parameters, or a mapping
            of group name -> module or sequence of parameters.

    Returns:
        (groups, named): ``named`` is False when a single unnamed group was given (records then
        hold one flat dict instead of one per group).
    """
    if isinstance(params, Mapping):
        if not params:
            raise EntangleValueError("Probe: the parameter-group dict is empty")
        return {str(k): _as_param_list(v, str(k)) for k, v in params.items()}, True
    return {"params": _as_param_list(params, "params")}, False


def distinct_params(groups: Mapping[str, list]) -> list[torch.nn.Parameter]:
    """Every parameter of ``groups`` once, in first-seen order (groups may overlap)."""
    seen: dict[int, torch.Tensor] = {}
    for group in groups.values():
        for p in group:
            seen.setdefault(id(p), p)
    return list(seen.values())


def _as_param_list(value, name: str) -> list[torch.nn.Parameter]:
    if isinstance(value, torch.nn.Module):
        found = _trainable(value.parameters())
    elif isinstance(value, torch.Tensor):
        found = [value]
    else:
        try:
            found = list(value)
        except TypeError as exc:
            raise EntangleTypeError(
                f"parameter group {name!r}: expected a module or a sequence of parameters, got "
                f"{type(value).__name__}"
            ) from exc
    for p in found:
        if not isinstance(p, torch.Tensor):
            raise EntangleTypeError(
                f"parameter group {name!r} holds a {type(p).__name__}, not a parameter"
            )
    if not found:
        raise EntangleValueError(
            f"parameter group {name!r} has no trainable parameters; unfreeze them or drop it"
        )
    frozen = [p for p in found if not p.requires_grad]
    if frozen:
        raise EntangleValueError(
            f"parameter group {name!r} holds {len(frozen)} frozen parameters "
            "(requires_grad=False); they receive no gradient: probe trainable parameters"
        )
    return found
