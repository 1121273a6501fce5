"""Packaging promises: a light import, the public names, the console script."""

from __future__ import annotations

import json
import subprocess
import sys

import entangle


def test_import_is_light():
    code = (
        "import sys, json, entangle, entangle.metrics, entangle.probing.probe, entangle.eagc; "
        "print(json.dumps(sorted(m for m in ('matplotlib', 'seaborn', 'openTSNE', 'timm', "
        "'typer', 'sklearn') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_resolve():
    # each exported name is the object of that name defined inside entangle (a wrong module
    # in the lazy export table, or a name exported but missing, fails here), with a docstring
    for name in entangle.__all__:
        value = getattr(entangle, name)
        if name == "__version__":
            assert isinstance(value, str) and value.count(".") == 2
            continue
        if isinstance(value, type(entangle)):
            assert value.__name__ == f"entangle.{name}"
        else:
            assert value.__name__ == name and value.__module__.startswith("entangle."), name
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert sorted(set(entangle.__all__)) == sorted(entangle.__all__)
    assert dir(entangle) == sorted(entangle.__all__)


def test_star_import_binds_every_public_name_in_a_fresh_interpreter():
    code = (
        "import json; ns = {}; exec('from entangle import *', ns); "
        "import entangle; print(json.dumps(sorted(n for n in entangle.__all__ if n in ns)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == sorted(entangle.__all__)


def test_the_readme_loop_imports_public_names():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(t for t in readme.splitlines() if t.startswith("from entangle import "))
    names = [n.strip() for n in line.removeprefix("from entangle import ").split(",")]
    assert names and set(names) <= set(entangle.__all__)


def test_cli_is_not_installed_as_a_top_level_module(tmp_path):
    # run outside the checkout so only what is installed can be found
    code = (
        "import importlib.util as u; "
        "print(u.find_spec('cli') is None, bool(u.find_spec('entangle.cli')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split() == ["True", "True"]


def test_console_script_runs():
    out = subprocess.run(["entangle", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for command in ("demo", "train", "report"):
        assert command in out.stdout
