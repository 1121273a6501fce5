"""The project documents itself: every docs/ page a docstring or the index names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
POINTER = re.compile(r"docs/([A-Za-z0-9_\-]+\.md)")


def _sources():
    for folder in ("entangle", "cli"):
        yield from (ROOT / folder).rglob("*.py")


def test_docstrings_point_into_the_repository_not_to_design_md():
    offenders = [str(p.relative_to(ROOT)) for p in _sources() if "DESIGN.md" in p.read_text()]
    # before: 14 docstrings pointed to "DESIGN.md §3/§5", a file outside the repository
    assert offenders == []


def test_every_docs_page_a_docstring_names_exists():
    named = {m for p in _sources() for m in POINTER.findall(p.read_text(encoding="utf-8"))}
    assert {"quantities.md", "records.md"} <= named
    missing = sorted(n for n in named if not (ROOT / "docs" / n).is_file())
    assert missing == []


def test_the_index_links_every_page_and_only_existing_ones():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([A-Za-z0-9_\-]+\.md)\)", index))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert links == pages


def test_records_md_documents_the_keys_reports_read():
    records = (ROOT / "docs" / "records.md").read_text(encoding="utf-8")
    from entangle.probing.probe import RECORD_KEYS

    for key in sorted(RECORD_KEYS):
        assert f"`{key}`" in records, key
    for key in ("gdc_early", "soc_early", "gdc_mean", "soc_all", "early_steps", "conceptor"):
        assert f"`{key}`" in records, key
