"""Packaging promises: a light import, the public names, the console script."""

from __future__ import annotations

import json
import subprocess
import sys

import entangle


def test_import_is_light():
    code = (
        "import sys, json, entangle, entangle.metrics, entangle.probe, entangle.eagc; "
        "print(json.dumps(sorted(m for m in ('matplotlib', 'seaborn', 'openTSNE', 'timm', "
        "'typer', 'sklearn') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_resolve():
    for name in entangle.__all__:
        assert getattr(entangle, name) is not None


def test_cli_is_not_installed_as_a_top_level_module(tmp_path):
    # run outside the checkout so only what is installed can be found
    code = (
        "import importlib.util as u; "
        "print(u.find_spec('cli') is None, bool(u.find_spec('entangle_cli')))"
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
