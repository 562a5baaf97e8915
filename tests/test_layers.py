"""The layer rule of docs/architecture.md: a module under tools/ or datasets/ imports only from its
own layer or a lower one (lazy imports inside functions count too), and never from scripts/.

    uv run pytest tests/test_layers.py -q
"""

from __future__ import annotations

import ast
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


def project_graph(root: Path = ROOT) -> dict[str, list[str]]:
    return {module_name(p, root): imports_of(p.read_text()) for package in ("tools", "datasets")
            for p in sorted((root / package).rglob("*.py"))}


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


def test_layer_names_follow_the_longest_prefix():
    assert layer_of("tools.models") == "models"
    assert layer_of("tools.core.io") == "core"
    assert layer_of("tools.pruning.structured") == layer_of("tools.deploy.quantize") == "algorithms"
    assert layer_of("scripts.train") == "scripts"
    assert layer_of("torch.nn") is None
