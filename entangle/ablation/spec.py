"""The grid spec: a TOML ``[base]`` of training settings crossed with ``[grid]`` lists.

A spec file looks like::

    [base]                      # any TrainConfig field, or `variant`
    data = "digits"
    epochs = 6

    [grid]                      # lists crossed with each other: one cell per combination
    variant = ["baseline", "aga", "eep", "eagc", "eagc-fixed"]
    seed = [0, 1]

``[[grid]]`` (an array of tables) gives several grids whose cells are joined, e.g. the
variants over seeds plus a sweep of one weight for EAGC only, without crossing the weight
with the baseline. Cells that come out identical are run once.

``variant`` is shorthand for the EAGC switches ``eagc`` / ``aga`` / ``eep`` / ``adaptive``
and the ``start``: ``baseline`` (from the pretrained weights), ``baseline-reference`` (from
the reference model, EAGC's start), ``aga``, ``eep``, ``eep-fixed``, ``eagc``, ``eagc-fixed``
(from the reference model, the EAGC authors' warm start) and each of those ``-pretrained``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from entangle.errors import EntangleError, EntangleTypeError, EntangleValueError
from entangle.gcd.config import VARIANTS as VARIANTS
from entangle.gcd.train import TrainConfig
from entangle.runs.limits import GRID_CELLS

_SWITCHES = ("eagc", "aga", "eep", "adaptive", "start")
# the runner assigns devices per worker; sweeping them would make cells depend on placement
_NOT_SWEPT = ("device",)
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
MAX_NAME = 160


def valid_keys() -> list[str]:
    """Every key a spec may use: ``variant`` and the TrainConfig field names."""
    return ["variant"] + [f.name for f in dataclasses.fields(TrainConfig)]


@dataclass(frozen=True)
class Cell:
    """One training run of the grid.

    Attributes:
        name: directory name, built from the swept settings (stable, filesystem-safe).
        settings: the swept keys' values for this cell (``variant`` as its name).
        config: the full training settings.
    """

    name: str
    settings: dict
    config: TrainConfig


@dataclass
class GridSpec:
    """A parsed, validated grid: base settings and one or more grids of lists to cross.

    Attributes:
        base: ``{key: value}`` applied to every cell.
        grids: one ``{key: [values]}`` dict per grid; their cells are joined.
        source: where the spec came from (a path), for messages.
    """

    base: dict
    grids: list[dict[str, list]] = field(default_factory=list)
    source: str | None = None

    def swept_keys(self) -> list[str]:
        """Keys that vary across cells, in order of first appearance, ``seed`` last."""
        keys = []
        for grid in self.grids:
            keys += [k for k in grid if k not in keys]
        return [k for k in keys if k != "seed"] + (["seed"] if "seed" in keys else [])

    def cells(self) -> list[Cell]:
        """All cells, grid by grid in the spec's order; identical cells appear once.

        Raises:
            EntangleValueError: a combination TrainConfig rejects (named by its cell).
        """
        total = sum(math.prod(len(v) for v in grid.values()) for grid in self.grids or [{}])
        # counted from the axis lengths before any cell is built (entangle.runs.limits)
        GRID_CELLS.check(total, "the grid has", "shrink the grid or raise")
        keys = self.swept_keys()
        cells: dict[str, Cell] = {}
        for grid in self.grids or [{}]:
            for values in itertools.product(*grid.values()):
                settings = self.base | dict(zip(grid, values, strict=True))
                config = _config(settings)
                shown = {k: setting_value(config, k) for k in keys}
                name = cell_name(shown)
                cells.setdefault(name, Cell(name, shown, config))
        return list(cells.values())

    def to_dict(self) -> dict:
        """Plain-JSON form (stored in the grid folder's grid.json)."""
        return {"base": dict(self.base), "grids": [dict(g) for g in self.grids]}


def setting_value(config: TrainConfig, key: str):
    """The value of a spec key in a config (``variant`` is derived from the switches)."""
    return config.variant() if key == "variant" else getattr(config, key)


def _config(settings: dict) -> TrainConfig:
    kwargs = dict(settings)
    variant = kwargs.pop("variant", None)
    if variant is not None:
        kwargs.update(VARIANTS[variant])
    try:
        return TrainConfig(**kwargs)
    except EntangleError as exc:
        raise EntangleValueError(f"grid cell {settings}: {exc}") from exc


# ---------------------------------------------------------------- names


def format_value(value) -> str:
    """A value as it appears in a cell name (``true``, ``0.7``, ``1e-05``, ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _safe(text: str) -> str:
    safe = _SAFE.sub("-", text)
    if safe != text or safe.startswith(".") or not safe:
        # keep names of different values apart after the replacement
        safe = f"{safe}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"
    return safe


def cell_name(settings: dict) -> str:
    """``key=value__key=value`` of the swept settings; ``base`` when nothing is swept.

    Characters outside ``[A-Za-z0-9._+-]`` become ``-`` (plus a short hash of the original
    value so that two values never share a name); names longer than 160 characters are
    shortened and end in a hash of the full name.
    """
    if not settings:
        return "base"
    name = "__".join(f"{k}={_safe(format_value(v))}" for k, v in settings.items())
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 12]}__{digest}"
    return name


# ---------------------------------------------------------------- parsing


def load_grid(path) -> GridSpec:
    """Read and validate a grid spec from a TOML file.

    Raises:
        EntangleValueError: missing file, invalid TOML, unknown keys, bad values.
        EntangleTypeError: a value of the wrong type for its setting.
        EntangleError: Python < 3.11 without the ``tomli`` package.
    """
    path = Path(path)
    if not path.is_file():
        raise EntangleValueError(f"grid spec {path} does not exist; pass a TOML file")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise EntangleError(
                "reading a TOML grid spec needs Python 3.11+ or the tomli package "
                "(pip install tomli)"
            ) from None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EntangleValueError(f"{path} is not valid TOML: {exc}") from exc
    return parse_grid(raw, source=str(path))


def parse_grid(raw: dict, source: str | None = None) -> GridSpec:
    """Validate a spec given as a dict (``{"base": {...}, "grid": {...} or [{...}, ...]}``).

    Values are checked against the TrainConfig field types (an integer is accepted for a
    float setting); every combination is checked by building its TrainConfig.
    """
    where = source or "grid spec"
    if not isinstance(raw, dict):
        raise EntangleTypeError(f"{where}: expected a table with [base] and [grid]")
    unknown = sorted(set(raw) - {"base", "grid"})
    if unknown:
        raise EntangleValueError(
            f"{where}: unknown top-level table(s) {unknown}; a spec has [base] and [grid] "
            "(or [[grid]]) only"
        )
    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise EntangleTypeError(f"{where}: [base] must be a table of settings")
    grids = raw.get("grid", [])
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise EntangleTypeError(f"{where}: [grid] must be a table (or [[grid]] tables) of lists")
    base = {k: _check_value(k, v, f"{where} [base]") for k, v in base.items()}
    checked = []
    for i, grid in enumerate(grids):
        label = f"{where} [grid]" if len(grids) == 1 else f"{where} [[grid]] #{i + 1}"
        checked.append({k: _check_list(k, v, label) for k, v in grid.items()})
    _check_switches(base, checked, where)
    spec = GridSpec(base=base, grids=checked, source=source)
    spec.cells()  # every combination must make a valid TrainConfig
    return spec


def _check_key(key: str, where: str) -> None:
    if key not in valid_keys():
        raise EntangleValueError(
            f"{where}: unknown setting {key!r}; valid settings are: {', '.join(valid_keys())}"
        )


def _check_list(key: str, values, where: str) -> list:
    _check_key(key, where)
    if key in _NOT_SWEPT:
        raise EntangleValueError(
            f"{where}: {key!r} cannot be swept; put it in [base] or use --devices"
        )
    if not isinstance(values, list):
        raise EntangleTypeError(
            f"{where}: {key} must be a list of values to cross, got {values!r}; put single "
            "values in [base]"
        )
    if not values:
        raise EntangleValueError(f"{where}: {key} is an empty list; give at least one value")
    checked = [_check_value(key, v, where) for v in values]
    if len({format_value(v) for v in checked}) != len(checked):
        raise EntangleValueError(f"{where}: {key} lists a value twice: {values}")
    return checked


def _check_value(key: str, value, where: str):
    _check_key(key, where)
    if key == "variant":
        if not isinstance(value, str) or value not in VARIANTS:
            raise EntangleValueError(
                f"{where}: variant {value!r} is not one of {', '.join(VARIANTS)} (one name "
                "per value; to sweep variants, list them under [grid])"
            )
        return value
    hint = typing.get_type_hints(TrainConfig)[key]
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int) and int not in allowed and float in allowed:
        return float(value)
    else:
        ok = isinstance(value, tuple(t for t in allowed if t is not type(None)))
    if not ok:
        names = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise EntangleTypeError(f"{where}: {key} must be {names}, got {value!r}")
    return value


def _check_switches(base: dict, grids: list[dict], where: str) -> None:
    keys = set(base).union(*grids)
    if "variant" in keys and keys & set(_SWITCHES):
        raise EntangleValueError(
            f"{where}: `variant` sets {', '.join(_SWITCHES)}; remove "
            f"{', '.join(sorted(keys & set(_SWITCHES)))} or do not use `variant`"
        )
