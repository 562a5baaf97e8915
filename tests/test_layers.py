"""The layer rule of docs/architecture.md: a module under tools/ or datasets/ imports only from its
own layer or a lower one (lazy imports inside functions count too), and never from scripts/; no
module, in scripts/ either, closes an import loop (lazy imports count here too) or imports relatively.

    uv run pytest tests/test_layers.py -q
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the first entry whose prefix names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("tools.core", "tools")),
    ("datasets", ("datasets",)),
    ("models", ("tools.models", "tools.modeling", "tools.sparse_storage")),
    ("measure", ("tools.measure",)),
    ("training", ("tools.training",)),
    ("algorithms", ("tools.pruning", "tools.deploy")),
    ("runs", ("tools.runs",)),
    ("reports", ("tools.reports",)),
    ("workflows", ("tools.workflows",)),
    ("scripts", ("scripts",)),  # the command-line entry points: above everything, imported by nothing here
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name (the longest matching prefix wins); None outside the project."""
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str) -> list[str]:
    """Every absolute module a source file imports, anywhere in it; `from pkg import name` counts as
    pkg.name (which may be a module or an attribute: the layer is the same either way)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def violations(graph: dict[str, list[str]]) -> list[str]:
    """`a.b imports c.d (layer X -> higher layer Y)` for each upward import in {module: imports}."""
    found = []
    for module, imported in sorted(graph.items()):
        own = layer_of(module)
        for target in imported:
            theirs = layer_of(target)
            if own and theirs and RANK[theirs] > RANK[own]:
                found.append(f"{module} imports {target} (layer {own} -> higher layer {theirs})")
    return found


def project_graph(root: Path = ROOT, packages: tuple[str, ...] = ("tools", "datasets")) -> dict[str, list[str]]:
    return {
        module_name(p, root): imports_of(p.read_text())
        for package in packages
        for p in sorted((root / package).rglob("*.py"))
    }


def relative_imports(root: Path = ROOT, packages: tuple[str, ...] = ("tools", "datasets", "scripts")) -> list[str]:
    """`a.b imports .c relatively (write tools.x.c)` for each `from .c import ...` anywhere in a module:
    the layer rule reads absolute names only, so a relative import would slip past it."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    found.append(
                        f"{module_name(path, root)} imports {'.' * node.level}{node.module or ''} "
                        "relatively (write the absolute name)"
                    )
    return found


def module_edges(graph: dict[str, list[str]]) -> dict[str, set[str]]:
    """{module: the project modules it imports}: `from pkg.mod import name` counts as pkg.mod (the
    longest imported prefix that is a module here); names outside the project drop out."""

    def owner(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in graph:
            parts.pop()
        return ".".join(parts) or None

    return {module: {owner(n) for n in imported} - {None, module} for module, imported in graph.items()}


def _shortest_loop(edges: dict[str, set[str]], start: str) -> list[str] | None:
    """start -> ... -> start along the fewest imports (breadth first), or None."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(edges[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1] + [start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    return None


def import_loops(graph: dict[str, list[str]]) -> list[str]:
    """`a -> b -> a` for each import loop, named once from its alphabetically first module."""
    edges = module_edges(graph)
    loops = {}
    for module in sorted(edges):
        loop = _shortest_loop(edges, module)
        if loop and not set(loop) & set(loops):
            loops[module] = loop
    return [" -> ".join(loop) for loop in loops.values()]


def test_every_module_is_in_a_layer():
    unplaced = [m for m in project_graph() if layer_of(m) is None]
    assert not unplaced, unplaced
    # a new top-level module in tools/ would silently land in core (prefix "tools"): name its layer
    loose = [p.name for p in (ROOT / "tools").glob("*.py") if p.stem not in ("__init__", "models", "sparse_storage")]
    assert not loose, f"modules directly under tools/ (put them in a layer package): {loose}"


def test_no_module_imports_a_higher_layer():
    assert violations(project_graph()) == []


def test_an_upward_import_fails_with_its_name_and_layers(tmp_path):
    (tmp_path / "tools" / "core").mkdir(parents=True)
    (tmp_path / "tools" / "core" / "bad.py").write_text("def f():\n    from tools.runs.prune_structured import run\n")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "loader.py").write_text("import tools.training.engine\nfrom tools.core import io\n")
    assert violations(project_graph(tmp_path)) == [
        "datasets.loader imports tools.training.engine (layer datasets -> higher layer training)",
        "tools.core.bad imports tools.runs.prune_structured.run (layer core -> higher layer runs)",
    ]


def test_no_import_loop_anywhere():
    assert import_loops(project_graph(packages=("tools", "datasets", "scripts"))) == []


def test_no_relative_import():
    assert relative_imports() == []


def test_a_loop_closed_inside_a_function_fails_with_its_path(tmp_path):
    reports = tmp_path / "tools" / "reports"
    reports.mkdir(parents=True)
    (reports / "__init__.py").write_text("")
    (reports / "tables.py").write_text("def markdown_table():\n    pass\n")
    (reports / "report.py").write_text(
        "from tools.reports.tables import markdown_table\n\ndef write():\n    from tools.reports import findings\n"
    )
    (reports / "findings.py").write_text("import os\n\ndef section():\n    from tools.reports.report import md_table\n")
    assert import_loops(project_graph(tmp_path)) == [
        "tools.reports.findings -> tools.reports.report -> tools.reports.findings"
    ]
    (reports / "findings.py").write_text("from tools.reports.tables import markdown_table\n")  # the loop cut
    assert import_loops(project_graph(tmp_path)) == []


def test_a_relative_import_fails_with_its_name(tmp_path):
    (tmp_path / "tools" / "core").mkdir(parents=True)
    (tmp_path / "tools" / "core" / "io.py").write_text("def f():\n    from . import errors\n")
    (tmp_path / "tools" / "core" / "cli.py").write_text("from ..core.errors import UserError\n")
    assert relative_imports(tmp_path) == [
        "tools.core.cli imports ..core.errors relatively (write the absolute name)",
        "tools.core.io imports . relatively (write the absolute name)",
    ]


def test_layer_names_follow_the_longest_prefix():
    assert layer_of("tools.models") == "models"
    assert layer_of("tools.core.io") == "core"
    assert layer_of("tools.pruning.structured") == layer_of("tools.deploy.quantize") == "algorithms"
    assert layer_of("scripts.train") == "scripts"
    assert layer_of("torch.nn") is None
