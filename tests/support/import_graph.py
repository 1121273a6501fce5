"""entangle's import graph, function-level imports included: numbers, cycles, upward arrows.

Used by tests/test_architecture.py and runnable to measure any tree or commit::

    python tests/support/import_graph.py                 # this checkout's entangle/
    python tests/support/import_graph.py --rev d33f26a   # a commit (git archive to a temp dir)

A "unit" is a folder of entangle/ (``probing``) or a top-level module (``eagc``); the layer
order is docs/architecture.md's. Imports under ``if TYPE_CHECKING:`` are not runtime edges
and are left out. A function-level import counts as explained when its line (or the line
above) carries the marker ``# lazy:`` followed by its reason (an optional dependency or
start-up time).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# docs/architecture.md: a unit imports only from its own layer or lower ones
LAYERS = {
    "errors": 0,
    "defaults": 0,
    "lazy_exports": 0,
    "metrics": 0,
    "nn": 0,
    "runs": 0,
    "probing": 1,
    "eagc": 1,
    "coordination": 1,
    "models": 2,
    "data": 2,
    # below the recipe, not above it: gcd resumes and warm-starts from checkpoints, and
    # checkpoints needs only models/ and runs/ (docs/architecture.md)
    "checkpoints": 2,
    "gcd": 3,
    "analysis": 4,
    "logs": 4,
    "report": 4,
    "ablation": 4,
    "bench": 4,
    "cli": 5,
    "__init__": 6,
    "__main__": 6,
}
MARKER = "# lazy:"
# the marker counts only with a reason after it
MARKED = re.compile(r"# lazy:[ \t]*\S")
# a function longer than LONG_FUNCTION says why with this marker on its def line or the line
# above (e.g. a typer command whose signature is the option list)
LONG_MARKER = "# long:"
LONG_MODULE = 400
LONG_FUNCTION = 80


@dataclass
class Import:
    source: str  # importing module
    target: str  # imported entangle module
    line: int
    lazy: bool  # inside a function
    marked: bool  # carries the "# lazy:" marker


@dataclass
class Graph:
    modules: dict[str, Path]
    imports: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            out[imp.source].add(imp.target)
        return out

    def unit_edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {unit(m): set() for m in self.modules}
        for imp in self.imports:
            a, b = unit(imp.source), unit(imp.target)
            if a != b:
                out[a].add(b)
        return out

    def upward(self) -> list[Import]:
        """Imports from a unit to a unit of a higher layer (unknown units: not judged)."""
        bad = []
        for imp in self.imports:
            a, b = LAYERS.get(unit(imp.source)), LAYERS.get(unit(imp.target))
            if a is not None and b is not None and b > a:
                bad.append(imp)
        return bad


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def build(root: Path) -> Graph:
    """The import graph of the package at ``root`` (a folder named ``entangle``)."""
    modules = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph = Graph(modules)
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        is_package = path.name == "__init__.py"
        for node, lazy in _imports(ast.parse(text)):
            for target in _targets(node, name, is_package, modules):
                # a submodule's import of its own package (run first by Python) is no edge
                if target == name or name.startswith(target + "."):
                    continue
                near = (
                    lines[node.lineno - 1]
                    + "\n"
                    + (lines[node.lineno - 2] if node.lineno > 1 else "")
                )
                graph.imports.append(
                    Import(name, target, node.lineno, lazy, bool(MARKED.search(near)))
                )
    return graph


def _imports(tree: ast.AST):
    """Every import node with whether it sits in a function; TYPE_CHECKING blocks skipped."""

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    yield from visit(sub, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, inner)

    yield from visit(tree, False)


def _targets(node, name: str, is_package: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        candidates = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        candidates = [f"{base}.{a.name}" for a in node.names] + [base]
    out = []
    for c in candidates:
        # the longest known module that the name is or lies in (a.b.func -> a.b)
        while c and c not in modules:
            c = c.rpartition(".")[0]
        if c and c not in out:
            out.append(c)
    # "from pkg import sub" names sub; drop the bare package when a submodule was found
    return [t for t in out if not any(o.startswith(t + ".") for o in out)] or out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return sorted(out)


def long_modules(graph: Graph) -> list[tuple[str, int]]:
    """Modules over LONG_MODULE lines, with their line counts."""
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in graph.modules.items()}
    return sorted((m, n) for m, n in sizes.items() if n > LONG_MODULE)


def long_functions(graph: Graph) -> list[tuple[str, int, bool]]:
    """Functions (methods and nested ones too) over LONG_FUNCTION lines, signature and
    docstring included: ``(module:name, lines, says_why)``."""
    out = []
    for name, path in graph.modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            if length > LONG_FUNCTION:
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                near = "\n".join(lines[max(0, first - 2) : node.lineno])
                says_why = bool(re.search(re.escape(LONG_MARKER) + r"[ \t]*\S", near))
                out.append((f"{name}:{node.name}", length, says_why))
    return sorted(out)


def numbers(graph: Graph) -> dict:
    """The arrangement's numbers (what the architecture note quotes)."""
    units = graph.unit_edges()
    lazy = [i for i in graph.imports if i.lazy]
    return {
        "modules": len(graph.modules),
        "units": len(units),
        "unit_arrows": sum(len(v) for v in units.values()),
        "unit_cycles": cycles(units),
        "module_arrows": sum(len(v) for v in graph.edges().values()),
        "module_cycles": cycles(graph.edges()),
        "function_level_imports": len(lazy),
        "function_level_unmarked": sum(not i.marked for i in lazy),
        "upward_imports": len(graph.upward()),
        "modules_over_400_lines": long_modules(graph),
        "functions_over_80_lines": long_functions(graph),
    }


def _checkout(rev: str, into: Path) -> Path:
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "entangle"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "entangle"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).parents[2] / "entangle"))
    parser.add_argument("--rev", help="measure this commit's entangle/ instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = _checkout(args.rev, Path(tmp)) if args.rev else Path(args.root)
        found = numbers(build(root))
    for key, value in found.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                if key == "functions_over_80_lines":
                    print(f"  - {item[1]}: {item[0]}" + ("  (says why)" if item[2] else ""))
                elif key == "modules_over_400_lines":
                    print(f"  - {item[1]}: {item[0]}")
                else:
                    print(f"  - {len(item)}: {' '.join(item)}")
        else:
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
