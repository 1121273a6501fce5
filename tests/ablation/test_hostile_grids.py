"""Grids that would exhaust memory are refused before expanding; CSV cells never run (issue 19)."""

from __future__ import annotations

import pytest

from entangle.ablation.results import results_csv
from entangle.ablation.spec import GridSpec
from entangle.errors import EntangleValueError


def test_a_huge_grid_is_refused_from_its_axis_lengths():
    axis = list(range(100))
    spec = GridSpec(base={"data": "synthetic"}, grids=[{"lr": axis, "epochs": axis, "seed": axis}])
    with pytest.raises(EntangleValueError, match="1000000 cells.*ENTANGLE_MAX_CELLS"):
        spec.cells()


def test_formula_cells_are_quoted_and_numbers_kept():
    rows = [{"a": "=HYPERLINK(1)", "b": "+cmd|x", "c": -1.5, "d": "@x", "e": "\tx", "f": 3}]
    line = results_csv(rows).splitlines()[1]
    assert line.split(",")[:4] == ["'=HYPERLINK(1)", "'+cmd|x", "-1.5", "'@x"]
    assert line.endswith(",3")


def test_a_planted_setup_bomb_is_refused_in_one_line(tmp_path):
    """A grid's setups/ folder may come from someone else: a stored setup that declares a
    4 GiB storage in a few KB is refused from its central directory, not inflated."""
    import sys
    from pathlib import Path

    import torch

    from entangle.ablation.setups import cached_setup, setup_key
    from entangle.checkpoints.safe import CheckpointError
    from entangle.gcd.train import TrainConfig

    sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
    from bombs import declare_size

    config = TrainConfig(data="synthetic", epochs=1, device="cpu")
    path = tmp_path / f"{setup_key(config)}.pt"
    torch.save({"backbone": {"w": torch.ones(4)}, "head": {}}, path)
    declare_size(path, "/data/0", 4 << 30)
    with pytest.raises(CheckpointError, match="ENTANGLE_MAX_INFLATE_RATIO=N") as info:
        cached_setup(config, tmp_path)
    assert "\n" not in str(info.value)


def test_any_toml_spec_is_a_grid_or_one_line(tmp_path):
    """Hostile grid specs (issue 19): known and unknown keys with values of any TOML type,
    under [base], [grid] or [[grid]]: a grid whose cells are counted, or one EntangleError
    line, never another exception."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from entangle.ablation.spec import load_grid, valid_keys
    from entangle.errors import EntangleError

    keys = st.sampled_from([*valid_keys()[:40], "variant", "seed", "nope", "old_classes"])
    scalar = (
        st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.booleans()
        | st.text(max_size=6)
    )
    value = scalar | st.lists(scalar, max_size=3)

    # JSON's literals are TOML's for these types (integers past 64 bits make invalid TOML)
    table = st.dictionaries(keys, value, max_size=3).map(
        lambda d: "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items())
    )
    heading = st.sampled_from(["[base]\n", "[grid]\n", "[[grid]]\n", "", "[other]\n"])
    spec = st.lists(st.tuples(heading, table).map("".join), max_size=3).map("".join)

    @settings(
        max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(text=spec)
    def check(text):
        path = tmp_path / "grid.toml"
        path.write_text(text, encoding="utf-8")
        try:
            grid = load_grid(path)
            grid.cells()
        except EntangleError as exc:
            assert "\n" not in str(exc).strip(), str(exc)

    check()
