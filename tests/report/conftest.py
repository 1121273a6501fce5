"""Report fixtures: two fake runs and one report built from them, shared across test modules."""

from __future__ import annotations

import pytest

from entangle.report import build_report
from entangle.report import tsne as tsne_module
from tests.report.fake_runs import XSS, make_pair


@pytest.fixture(scope="session")
def run_pair(tmp_path_factory):
    """A finished run and an unfinished EAGC run with a torn last line."""
    return make_pair(tmp_path_factory.mktemp("runs"), name_b=f"eagc {XSS}")


@pytest.fixture(scope="session")
def built_report(run_pair, tmp_path_factory):
    """``out/index.html`` of a two-run report (t-SNE capped below the row count)."""
    out = tmp_path_factory.mktemp("reports") / "report"
    return build_report(list(run_pair), out, tsne_max_points=150, seed=0)


@pytest.fixture
def count_maps(monkeypatch):
    """Counts t-SNE maps computed in this process (the report runs them here with workers=1)."""
    calls = []
    real = tsne_module.tsne_embed

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("entangle.report.maps.tsne_embed", counted)
    return calls
