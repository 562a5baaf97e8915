"""One step launcher (tools.workflows.launch) serves the pipeline, the sweep and the benchmark: none
of them starts a process or imports a script by itself; a teed step's output is shown and logged.

    uv run pytest tests/test_step_launcher.py -q
"""

from __future__ import annotations

import ast
import io
import sys

from conftest import ROOT

from tools.workflows.launch import run_teed, script_command

CALLERS = ("tools/workflows/pipeline.py", "tools/workflows/sweep.py", "tools/workflows/bench_runner.py")


def imported_modules(path: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_pipeline_sweep_and_benchmark_start_steps_only_through_the_launcher():
    for path in CALLERS:
        modules = imported_modules(path)
        assert "tools.workflows.launch" in modules, path
        assert not modules & {"subprocess", "importlib"}, f"{path} starts steps itself"
    scripts = [p.name for p in (ROOT / "scripts").glob("*.py") if "subprocess" in imported_modules(f"scripts/{p.name}")]
    assert scripts == [], f"scripts that launch processes themselves: {scripts}"


def test_a_script_step_runs_with_this_interpreter():
    assert script_command("sweep", ["--sweep", "s.yaml"]) == [
        sys.executable,
        "-m",
        "scripts.sweep",
        "--sweep",
        "s.yaml",
    ]


def test_a_teed_step_is_shown_and_logged_line_by_line(capsys):
    log = io.StringIO()
    code = run_teed([sys.executable, "-c", "import sys; print('one'); print('two', file=sys.stderr); sys.exit(3)"], log)
    assert code == 3
    assert log.getvalue() == capsys.readouterr().out == "one\ntwo\n"
