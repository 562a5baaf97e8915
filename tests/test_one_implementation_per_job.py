"""One implementation and one name per job (issue 30): Markdown tables, an exception's first line,
top-k counts and iterative schedules each live once; names that meant several things are unique.

    uv run pytest tests/test_one_implementation_per_job.py -q
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from tools.core.errors import first_line
from tools.measure.metrics import accuracy_topk
from tools.pruning.at_init import schedule_density
from tools.pruning.structured import GRANULARITIES, STRUCTURED_METHODS
from tools.pruning.unstructured import schedule_sparsity
from tools.reports.tables import markdown_table, records_table

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> dict[str, str]:
    return {
        p.relative_to(ROOT).as_posix(): p.read_text()
        for package in ("tools", "datasets")
        for p in sorted((ROOT / package).rglob("*.py"))
    }


def _spelled_in(pattern: str) -> list[str]:
    return sorted(path for path, text in _sources().items() if re.search(pattern, text))


def test_a_markdown_table_is_written_in_one_place():
    assert _spelled_in(r'" --- ') == ["tools/reports/tables.py"]


def test_an_exceptions_first_line_is_taken_in_one_place():
    # tools.core.errors.first_line itself reads `lines[0]`; no one else cuts a message by hand
    assert _spelled_in(r"splitlines\(\)\[0\]|splitlines\(\) or \[[^]]*\]\)\[0\]") == []
    assert first_line(ValueError("\n  bad shape\n  details")) == "bad shape"
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError(), empty="") == ""


def test_top_k_is_counted_in_one_place():
    assert _spelled_in(r"\.topk\(") == ["tools/measure/metrics.py"]


def test_the_benchmark_page_writes_its_tables_with_records_table():
    from tools.workflows.bench_doc import LAST_COLUMNS, bench_table

    rows = [
        {"benchmark": "a", "top-1": 91.2, "model": "resnet20", "target": "x | y"},
        {"benchmark": "b", "drop (pts)": "0.4", "model": "vgg16"},
    ]
    columns = ["benchmark", "top-1", "drop (pts)"] + [c for c in LAST_COLUMNS if any(c in r for r in rows)]
    assert bench_table(rows) == records_table(rows, columns)
    assert bench_table(rows).splitlines()[2] == "| a | 91.2 | - | resnet20 | x / y |"


def test_markdown_table_keeps_the_report_tables_byte_for_byte():
    # the separator both earlier writers produced ("|" + " --- |" * n and "|" + "|".join(" --- ") + "|")
    assert markdown_table(["a", "b"], [["1", 2]]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"


def test_evaluate_counts_top_k_with_the_metrics_helper():
    from tools.training.engine import evaluate

    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    targets = torch.tensor([1, 2, 0, 1])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[x.long().flatten()]

    batches = [(torch.arange(4.0).view(4, 1), targets)]
    result = evaluate(Fixed(), batches, device=torch.device("cpu"))
    assert (result["top1"], result["top5"]) == (25.0, 100.0)  # top-5 of 3 classes: every target
    assert [int(c) for c in accuracy_topk(logits, targets, (1, 2))] == [1, 2]


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
@pytest.mark.parametrize("density", [0.1, 0.01, 0.3, 10**-0.5])
def test_one_schedule_serves_both_and_keeps_their_figures(schedule, density):
    steps = 4
    for step in range(1, steps + 1):
        p = step / steps
        got = schedule_density(density, step, steps, schedule)
        # bit for bit what at_init computed before (a density is rounded to a weight count)
        assert got == (density**p if schedule == "exponential" else 1.0 - (1.0 - density) * p)
        sparsity = 1.0 - density
        before = 1.0 - (1.0 - sparsity) ** p if schedule == "exponential" else sparsity * p
        assert schedule_sparsity(sparsity, step, steps, schedule) == before
        assert math.isclose(got, 1.0 - schedule_sparsity(sparsity, step, steps, schedule), abs_tol=1e-12)
    assert schedule_density(density, steps, steps, schedule) == pytest.approx(density, abs=1e-15)


def test_public_names_in_tools_are_unique():
    # Parallel modules sharing an interface on purpose: each run module's plan and job (tools/runs/),
    # each image format's loader (datasets/), each workflow's doc writer. Not yet one: BatchNorm
    # folding for timing and for QAT (fx's fuse vs a conv-only fold that must succeed).
    # Each pruning run module's command-line flags, output folder and results writer (cli_flags,
    # prune_in, write_results), and one point of a grid (run_point: a sweep's, at_init's experiment).
    allowed = {
        "make_plan",
        "PruneJob",
        "load_decoded",
        "write_doc",
        "fold_batchnorm",
        "cli_flags",
        "prune_in",
        "write_results",
        "run_point",
    }
    seen: dict[str, list[str]] = {}
    for path, text in _sources().items():
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                seen.setdefault(node.name, []).append(path)
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1 and name not in allowed}
    assert clashes == {}
    assert "latency_table" not in seen and "md_table" not in seen


def test_old_module_names_are_gone_and_dead_code_removed():
    from tools.core.run_folder import RunFolder
    from tools.pruning.latency_target import LatencyTable

    assert importlib.util.find_spec("tools.training.evaluation") is None
    assert importlib.util.find_spec("tools.training.start") is None
    assert not hasattr(RunFolder, "is_complete") and not hasattr(LatencyTable, "predicted_reduction")


def test_models_py_keeps_the_pickled_classes_only():
    tree = ast.parse((ROOT / "tools" / "models.py").read_text())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ["_cifar_stage"]  # a helper of CifarResNet's __init__
    import tools.models as models

    for name in ("CifarResNet", "BasicBlock", "CifarVGG", "LeNet300100"):
        assert getattr(models, name).__module__ == "tools.models"


def test_structured_help_is_built_from_the_method_constants(capsys):
    import scripts.prune_structured as script

    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--method METHOD {' | '.join(STRUCTURED_METHODS)} (structured.method)" in help_text
    assert f"{' | '.join(GRANULARITIES)} (structured.granularity)" in help_text
