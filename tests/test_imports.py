"""The shape of the code: ports in forewarn/, adapters depend on forewarn/, no import cycles between files.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a cycle hidden in a function
is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from forewarn.settings import PROJECT_ROOT

PACKAGES = ("forewarn", "adapters", "flows", "feature_repo")
COMPOSITION_ROOT = "forewarn.compose"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        out |= {t for t in targets if t in known and t != name}
    return out


def _graph() -> nx.DiGraph:
    known = _modules()
    graph = nx.DiGraph()
    for name, path in known.items():
        graph.add_node(name)
        for target in _imports(name, path, known):
            graph.add_edge(name, target)
    return graph


def test_no_import_cycles_between_files() -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(_graph()) if len(c) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def test_only_the_composition_root_of_forewarn_imports_adapters() -> None:
    graph = _graph()
    offenders = sorted(
        (source, target)
        for source, target in graph.edges
        if source.startswith("forewarn") and source != COMPOSITION_ROOT and target.startswith("adapters")
    )
    assert offenders == []


@pytest.mark.parametrize("port", ["forewarn.cloud"])
def test_adapters_implement_ports_that_live_in_forewarn(port: str) -> None:
    graph = _graph()
    assert port in graph
    assert any(source.startswith("adapters") for source, target in graph.in_edges(port))
