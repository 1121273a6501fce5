"""``entangle ablate --paper simgcd-NAME``: the grid the EAGC paper ran on a benchmark.

Baseline (SimGCD), EAGC, AGA only and EEP only, seeds 0-2, every cell with the EAGC
authors' per-dataset script values (``--preset eagc``, :mod:`entangle.gcd.presets`) on the
benchmark's published split. The baseline keeps those values and switches the coordination
off, so the four cells differ only in EAGC's parts.
"""

from __future__ import annotations

from entangle.ablation.spec import GridSpec, parse_grid
from entangle.errors import EntangleValueError
from entangle.gcd.presets import preset_values

PAPER_GRIDS = (
    "simgcd-cub",
    "simgcd-scars",
    "simgcd-aircraft",
    "simgcd-cifar100",
    "simgcd-imagenet100",
)
PAPER_VARIANTS = ("baseline", "eagc", "aga", "eep")
PAPER_SEEDS = (0, 1, 2)


def paper_grid(name: str, root: str, **base) -> GridSpec:
    """The grid of ``name`` (one of ``PAPER_GRIDS``) on the data under ``root``.

    Args:
        name: ``simgcd-<benchmark>``.
        root: the benchmark's root folder (``NAME:ROOT``).
        **base: further [base] settings (``pretrained``, ``device``, ...); they override.
    """
    if name not in PAPER_GRIDS:
        raise EntangleValueError(f"unknown paper grid {name!r}; valid: {', '.join(PAPER_GRIDS)}")
    data = f"{name.removeprefix('simgcd-')}:{root}"
    values = preset_values("eagc", data)
    settings = {
        k: v
        for k, v in values.items()
        if k not in ("preset_source", "preset_not_applied", "eagc")  # variant sets eagc
    }
    raw = {
        "base": {"data": data, "preset": "eagc", **settings, **base},
        "grid": {"variant": list(PAPER_VARIANTS), "seed": list(PAPER_SEEDS)},
    }
    return parse_grid(raw, source=f"--paper {name} ({values['preset_source']})")
