"""``entangle splits``: a benchmark's parts and per-class counts as a table or JSON."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from entangle.cli.app import app, main
from tests.support.benchmark_trees import cifar_tree


def test_the_table_and_the_json_give_the_same_split(tmp_path):
    root = cifar_tree(tmp_path, "cifar10")
    table = CliRunner().invoke(app, ["splits", f"cifar10:{root}"])
    assert table.exit_code == 0, table.output
    assert "5 old + 5 new classes; labeled 25, unlabeled 75" in table.output
    lines = table.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["class", "kind"])
    rows = [line.split() for line in lines[header + 1 :] if line.strip()]
    assert len(rows) == 10 and sum(r[1] == "old" for r in rows) == 5
    assert sum(int(r[2]) for r in rows) == 25 and sum(int(r[3]) for r in rows) == 75
    doc = json.loads(CliRunner().invoke(app, ["splits", f"cifar10:{root}", "--json"]).output)
    assert len(doc["labeled"]) == 25 and len(doc["unlabeled"]) == 75 and len(doc["test"]) == 10
    assert len(doc["old_classes"]) == len(doc["new_classes"]) == 5


def test_data_without_a_root_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["entangle", "splits", "cub"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "splits takes a benchmark as NAME:ROOT, got 'cub'" in err
