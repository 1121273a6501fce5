"""The checkpoints package sits above the model builders: no import cycle through it."""

from __future__ import annotations

import ast
from pathlib import Path

import entangle

ROOT = Path(entangle.__file__).parent


def module_name(path: Path) -> str:
    parts = ["entangle", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """entangle module -> the entangle modules it imports (anywhere in the file, lazy too)."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            edges |= {t for t in targets if t in files and t != name}
        # a submodule's import of its own package (run first by Python) is not an edge
        graph[name] = {t for t in edges if not name.startswith(t + ".")}
    return graph


def cycle_through(graph: dict[str, set[str]], start_prefix: str) -> list[str] | None:
    """A cycle that passes through a module under ``start_prefix``, or None."""

    def visit(node, path, on_path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return path[path.index(nxt) :] + [nxt]
            found = visit(nxt, path + [nxt], on_path | {nxt})
            if found:
                return found
        return None

    for start in sorted(n for n in graph if n.startswith(start_prefix)):
        found = visit(start, [start], {start})
        if found and any(m.startswith(start_prefix) for m in found):
            return found
    return None


def test_model_builders_never_import_checkpoints():
    graph = import_graph()
    for builder in ("entangle.models.vit", "entangle.models.heads", "entangle.models.backbones"):
        assert not any(t.startswith("entangle.checkpoints") for t in graph[builder]), builder


def test_no_cycle_runs_through_the_checkpoints_package():
    assert cycle_through(import_graph(), "entangle.checkpoints") is None
