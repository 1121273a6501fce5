"""entangle.lazy_exports: one PEP 562 loader serves entangle, entangle.analysis and .report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from entangle.lazy_exports import lazy_exports


def test_names_load_on_first_access_and_are_cached():
    namespace = {"__all__": ["dumps", "decoder"]}
    exports = {"dumps": "json", "decoder": "json.decoder"}
    getattr_, dir_ = lazy_exports("pkg", exports, namespace)
    import json
    import json.decoder

    assert getattr_("dumps") is json.dumps and namespace["dumps"] is json.dumps
    assert getattr_("decoder") is json.decoder  # a name equal to its module's last part
    assert dir_() == ["dumps", "decoder"]
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'nope'"):
        getattr_("nope")


def test_packages_stay_light_and_resolve_their_names():
    code = (
        "import sys, entangle, entangle.analysis, entangle.report\n"
        "assert 'torch' not in sys.modules and 'scipy' not in sys.modules\n"
        "assert entangle.report.__dir__() == ['build_report', 'tsne_embed']\n"
        "from entangle.analysis import AnalyzeConfig\n"
        "assert AnalyzeConfig.__module__ == 'entangle.analysis.config'\n"
        "import entangle.metrics\n"
        "assert entangle.metrics is sys.modules['entangle.metrics']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
