"""Two code rules, checked with ast: a run folder's file names are spelled only in
tools/core/run_folder.py (everyone else imports its constants), and no function in tools/,
scripts/ or datasets/ is longer than 60 lines or takes more than 8 parameters (self/cls not
counted; use a small frozen dataclass, as fit's FitOptions or the runs' PruneJob do). A function's
lines are its logical lines, the lines where one of its statements starts: the formatter (ruff
format) spreads a long call over one line per argument, which makes nothing longer to read.

    uv run pytest tests/test_code_rules.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

from tools.core import run_folder

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_PARAMS = 60, 8
# every string constant of run_folder.py that names a file or folder of a run
FILE_NAMES = {
    value
    for name, value in vars(run_folder).items()
    if name.isupper() and isinstance(value, str) and not name.startswith("_")
}


def _docstring_ids(tree: ast.AST) -> set[int]:
    """The docstrings and f-string text fragments: prose, which may name files."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            found.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            found.update(id(v) for v in node.values if isinstance(v, ast.Constant))
    return found


def file_name_literals(source: str, path: str) -> list[str]:
    tree = ast.parse(source)
    prose = _docstring_ids(tree)
    hits = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in FILE_NAMES and id(node) not in prose
    ]
    return [f"{path}:{node.lineno} {node.value!r}" for node in sorted(hits, key=lambda n: (n.lineno, n.col_offset))]


def oversized_functions(source: str, path: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
        params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
        lines = len({n.lineno for n in ast.walk(node) if isinstance(n, ast.stmt)})  # logical lines
        if lines > MAX_LINES or len(params) > MAX_PARAMS:
            found.append(f"{path}:{node.lineno} {node.name}: {lines} lines, {len(params)} parameters")
    return found


def _sources(*packages: str):
    for package in packages:
        for p in sorted((ROOT / package).rglob("*.py")):
            yield str(p.relative_to(ROOT)), p.read_text()


def test_run_folder_file_names_are_spelled_only_in_run_folder():
    assert {"metrics.yaml", "config.yaml", "best_model.pth", "pruned_model.pth", "log.csv"} <= FILE_NAMES
    found = [
        hit
        for path, source in _sources("tools", "scripts", "datasets")
        if path != "tools/core/run_folder.py"
        for hit in file_name_literals(source, path)
    ]
    assert found == [], "use the tools.core.run_folder constants:\n" + "\n".join(found)


def test_no_function_in_tools_scripts_or_datasets_is_over_60_lines_or_8_parameters():
    found = [
        hit for path, source in _sources("tools", "scripts", "datasets") for hit in oversized_functions(source, path)
    ]
    assert found == [], "\n".join(found)


def test_the_checks_catch_what_they_look_for():
    source = '''
def long(a, b, c, d, e, f, g, h, i):
    """Writes metrics.yaml (a docstring may say so)."""
    print(f"wrote {'metrics.yaml'} into run_dir/config.yaml")
    return run_dir / "metrics.yaml"
''' + "\n".join(f"    x{i} = {i}" for i in range(60))
    assert file_name_literals(source, "m.py") == ["m.py:4 'metrics.yaml'", "m.py:5 'metrics.yaml'"]
    assert oversized_functions(source, "m.py") == ["m.py:2 long: 64 lines, 9 parameters"]
    assert oversized_functions("def ok(self, a, b, c, d, e, f, g, h):\n    pass\n", "m.py") == []
