"""The package's import graph: no circles, and every folder imports only the layers below it.

Read from the source with :mod:`ast` (nothing is imported), counting the imports
a module runs when it loads — those under ``if TYPE_CHECKING:`` too, since a
circle of type-only imports is still one a reader has to follow. Imports inside
functions (lazy loads of optional engines) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("config", "operators", "sources", "sinks", "dataflows", "api")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "operators": frozenset({"config"}),
    "sources": frozenset({"config"}),
    "sinks": frozenset({"config", "operators"}),
    "dataflows": frozenset({"config", "operators", "sources", "sinks"}),
    # The API's producer writes the tenant header the Kafka source reads.
    "api": frozenset({"config", "operators", "sinks", "sources"}),
}
"""What each folder may import besides itself (the README's layout, lower layers first)."""


def _modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found["riffle." + ".".join(parts)] = path
    return found


def _loaded_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours ``path`` imports at load time."""
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.add(node.module)
                out.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {name for name in out if name in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _loaded_imports(path, modules) - {name} for name, path in modules.items()}


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_no_import_circles() -> None:
    graph = _graph()
    done: set[str] = set()

    def circle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph[start]):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                found = circle_from(nxt, [*path, nxt])
                if found is not None:
                    return found
        done.add(start)
        return None

    for module in sorted(graph):
        circle = circle_from(module, [module])
        assert circle is None, " -> ".join(circle or [])


def test_layers_import_downwards() -> None:
    upward = [
        f"{module} imports {dep}"
        for module, deps in sorted(_graph().items())
        for dep in sorted(deps)
        if _layer(dep) != _layer(module) and _layer(dep) not in MAY_IMPORT[_layer(module)]
    ]
    assert upward == []
