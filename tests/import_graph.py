"""The project's import graph, and its cycles: ``python -m tests.import_graph`` exits 1 on any cycle.

Every ``import`` counts, at module level or inside a function: an import deferred into a function is
still a dependency, and a cycle through one is a knot a newcomer has to untie before changing either
side. Edges go from a module to the project module it names (``from a.b import c`` is an edge to
``a.b.c`` when that is a module, else to ``a.b``); importing a package's submodule does not count as
an edge to the package's ``__init__``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the repository folder of each installed top-level package (see pyproject's package-dir)
PACKAGES = ("skutag", "vision", "ocr", "text", "fusion", "taxonomy", "models")


def module_files() -> dict[str, Path]:
    """Module name -> file, for every project module (``skutag.vision.model`` is ``vision/model.py``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        base = ROOT / package
        prefix = "skutag" if package == "skutag" else f"skutag.{package}"
        for path in base.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    if name.partition(".")[0] in PACKAGES[1:]:  # a bare stage name: not a project import once installed
        return None
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            names.append(base) if not any(n in modules for n in names) else None
        for name in names:
            target = _resolve(name, modules)
            if target and target != module and not module.startswith(target + "."):
                targets.add(target)
    return targets


def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    edges = graph()
    found = cycles(edges)
    for component in found:
        print("import cycle: " + " <-> ".join(component))
        for module in component:
            inside = sorted(edges[module] & set(component))
            print(f"  {module} imports {', '.join(inside)}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
