"""Every script has the same shape: the file-form guard, parse_args, and a main() that makes one
call into the package (tools/ or datasets/), in no more than 120 lines.

    uv run pytest tests/test_script_shape.py -q
"""

from __future__ import annotations

import ast

from conftest import ROOT

MAX_SCRIPT_LINES = 120
SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.py") if not p.stem.startswith("_"))
ALIASES = ("pai_report",)  # old names that re-export another script's main


def package_names(tree: ast.Module) -> set[str]:
    """Names the script imports from tools/ or datasets/."""
    return {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("tools", "datasets")
        for alias in node.names
    }


def main_calls(tree: ast.Module) -> list[str]:
    """The names main() calls at its top level, or why it is not one call."""
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    if len(main.body) != 1 or not isinstance(main.body[0], ast.Expr) or not isinstance(main.body[0].value, ast.Call):
        return [f"main has {len(main.body)} statements"]
    func = main.body[0].value.func
    return [func.id if isinstance(func, ast.Name) else ast.unparse(func)]


def test_no_script_is_over_120_lines():
    long = {p.name: n for p in SCRIPTS if (n := len(p.read_text().splitlines())) > MAX_SCRIPT_LINES}
    assert long == {}


def test_every_main_makes_one_call_into_the_package():
    wrong = {}
    for path in SCRIPTS:
        if path.stem in ALIASES:
            continue
        tree = ast.parse(path.read_text())
        calls = main_calls(tree)
        if calls[0] not in package_names(tree):
            wrong[path.name] = calls
    assert wrong == {}


def test_the_check_sees_a_script_doing_the_work_itself():
    tree = ast.parse("from tools.runs.x import run\ndef main(argv=None):\n    args = parse(argv)\n    run(args)\n")
    assert main_calls(tree) == ["main has 2 statements"]
    tree = ast.parse("from tools.runs.x import run\ndef main(argv=None):\n    helper(argv)\n")
    assert main_calls(tree)[0] not in package_names(tree)
