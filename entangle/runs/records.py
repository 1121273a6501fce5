"""Read probe and evaluation records robustly: missing fields and JSON nulls become NaN.

The probe writes a gradient record ``R`` either flat (``{"cos": ..., "gdc": ...}``) or per
parameter group (``{"last_block": {...}, "all": {...}}``); everything here accepts both and
never raises on a record that lacks a field, because reports must render partial runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from entangle.runs.keys import ACC_ALL, ACC_PROTOCOL, EAGC, LAST_BLOCK, RAW, STEP
from entangle.runs.keys import NAN as NAN_KEY

NAN = float("nan")
# the parameter group the paper reports; used when a record holds several groups
PREFERRED_GROUP = LAST_BLOCK


def as_float(value) -> float:
    """A JSON value as a float: None, strings, dicts and booleans become NaN."""
    if isinstance(value, bool) or value is None:
        return NAN
    if isinstance(value, int | float):
        return float(value)
    return NAN


def dig(record: Mapping | None, *keys):
    """``record[k0][k1]...`` or None when any level is missing or not a mapping."""
    node = record
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def is_flat_gradient_record(record: Mapping) -> bool:
    """True when ``record`` holds metric values itself rather than one dict per group."""
    return not any(isinstance(v, Mapping) for v in record.values())


def gradient_groups(steps: Sequence[Mapping], kind: str = RAW) -> list[str]:
    """Parameter-group names present in ``steps[*][kind]``; ``[""]`` for flat records."""
    groups: list[str] = []
    for rec in steps:
        r = rec.get(kind) if isinstance(rec, Mapping) else None
        if not isinstance(r, Mapping) or not r:
            continue
        names = [""] if is_flat_gradient_record(r) else [k for k, v in r.items() if v]
        for name in names:
            if name not in groups:
                groups.append(name)
    return groups


def default_group(steps: Sequence[Mapping]) -> str:
    """The group to plot: ``last_block`` when recorded, else the first one seen."""
    groups = gradient_groups(steps, RAW) or gradient_groups(steps, EAGC)
    if PREFERRED_GROUP in groups:
        return PREFERRED_GROUP
    return groups[0] if groups else ""


def gradient_value(record: Mapping, kind: str, metric: str, group: str = "") -> float:
    """One gradient metric of one step record (NaN when absent)."""
    r = record.get(kind) if isinstance(record, Mapping) else None
    if not isinstance(r, Mapping):
        return NAN
    if is_flat_gradient_record(r):
        return as_float(r.get(metric))
    sub = r.get(group) if group else next(iter(r.values()), None)
    return as_float(dig(sub, metric))


def step_axis(steps: Sequence[Mapping]) -> np.ndarray:
    """``[n]`` step numbers of the records (their list position where ``step`` is missing)."""
    out = np.empty(len(steps), dtype=np.float64)
    for i, rec in enumerate(steps):
        s = as_float(dig(rec, STEP))
        out[i] = i if math.isnan(s) else s
    return out


def gradient_series(steps: Sequence[Mapping], kind: str, metric: str, group: str = ""):
    """``(step [n], value [n])`` for a gradient metric; values NaN where not recorded."""
    values = np.array([gradient_value(r, kind, metric, group) for r in steps], dtype=np.float64)
    return step_axis(steps), values


def path_series(records: Sequence[Mapping], *keys, x_key: str = STEP):
    """``(x [n], value [n])`` for a nested scalar field, e.g. ``("probeset", "soc")``.

    Records without the field are dropped (a ProbeSet SOC exists only on some steps).
    """
    xs, ys = [], []
    for i, rec in enumerate(records):
        node = dig(rec, *keys)
        if node is None:
            continue
        x = as_float(dig(rec, x_key))
        xs.append(i if math.isnan(x) else x)
        ys.append(as_float(node))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def summary_series(steps: Sequence[Mapping], *keys):
    """``(step [n], {stat: [n]})`` for a recorded distribution summary (mean, q10 ... q90)."""
    stats = ("mean", "std", "q10", "q25", "q50", "q75", "q90", "n")
    xs, cols = [], {k: [] for k in stats}
    for i, rec in enumerate(steps):
        node = dig(rec, *keys)
        if not isinstance(node, Mapping):
            continue
        x = as_float(dig(rec, STEP))
        xs.append(i if math.isnan(x) else x)
        for k in stats:
            cols[k].append(as_float(node.get(k)))
    return np.asarray(xs, dtype=np.float64), {k: np.asarray(v) for k, v in cols.items()}


def nan_reasons(steps: Sequence[Mapping]) -> dict[str, int]:
    """How many steps reported a NaN for each metric key (from the records' ``nan`` field)."""
    counts: dict[str, int] = {}
    for rec in steps:
        nan = dig(rec, NAN_KEY)
        if isinstance(nan, Mapping):
            for key in nan:
                counts[str(key)] = counts.get(str(key), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def nan_step_count(steps: Sequence[Mapping]) -> int:
    """Number of step records that reported at least one NaN metric."""
    return sum(1 for rec in steps if isinstance(dig(rec, NAN_KEY), Mapping) and dig(rec, NAN_KEY))


def accuracy_protocol(epochs: Sequence[Mapping]) -> str:
    """The accuracy protocol(s) of a run's evaluations, e.g. ``"v2"`` (docs/accuracy.md).

    Records with an accuracy but no ``acc_protocol`` field predate the field and are ``v2``
    (the only protocol entangle computed then); ``"-"`` when no record holds an accuracy.
    """
    seen: list[str] = []
    for rec in epochs:
        if not isinstance(rec, Mapping) or ACC_ALL not in rec:
            continue
        protocol = rec.get(ACC_PROTOCOL)
        protocol = str(protocol) if protocol else "v2"
        if protocol not in seen:
            seen.append(protocol)
    return ", ".join(seen) if seen else "-"


def flatten_config(config, prefix: str = "") -> list[tuple[str, str]]:
    """Nested config as ``(dotted.key, text)`` rows for a table; long lists are shortened."""
    rows: list[tuple[str, str]] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value:
                rows.extend(flatten_config(value, name))
            else:
                rows.append((name, _short(value)))
    elif config is not None:
        rows.append((prefix or "config", _short(config)))
    return rows


def _short(value, limit: int = 200) -> str:
    if isinstance(value, list | tuple) and len(value) > 12:
        text = ", ".join(map(str, value[:12])) + f", ... ({len(value)} items)"
    elif isinstance(value, list | tuple):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
