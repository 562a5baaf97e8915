"""Benchmark rows: headline first (bench.priority), estimated duration, and --budget-min."""

import pytest
from conftest import ROOT

from tools.core.errors import UserError
from tools.workflows.bench_budget import Budget, by_priority, expected_text
from tools.workflows.bench_recipe import discover, plan

ROW = "bench: {{script: train, table: t, device: cuda, expected_min: {minutes}, priority: {priority}}}\n"


def bench_dir(tmp_path, **rows):
    """name -> (expected_min, priority) or (expected_min, priority, needs)."""
    for name, (minutes, priority, *needs) in rows.items():
        text = ROW.format(minutes=minutes, priority=priority)
        if needs:
            text = text.replace("script: train", f"script: prune_structured, needs: [{needs[0]}]")
        (tmp_path / f"{name}.yaml").write_text(text)
    return discover(tmp_path)


def test_priority_orders_headline_first_and_plan_keeps_dependencies_first(tmp_path):
    benchmarks = bench_dir(tmp_path, a_other=(1, 0), base=(3, 30), goal=(2, 20, "base"), z_other=(1, 0))
    names = by_priority(benchmarks, list(benchmarks))
    assert names == ["base", "goal", "a_other", "z_other"]
    assert [b.name for b in plan(benchmarks, by_priority(benchmarks, ["goal", "a_other"]))] == [
        "base",
        "goal",
        "a_other",
    ]
    assert expected_text(benchmarks["base"]) == "expected 3.0 min (estimate, bench.expected_min)"


def test_budget_leaves_out_what_does_not_fit_and_its_dependents(tmp_path):
    benchmarks = bench_dir(
        tmp_path, base=(3, 30), goal=(6, 20, "base"), after=(1, 0, "goal"), small=(1, 0), unknown=(0, 0)
    )
    budget = Budget(5.0)
    runs = [
        b.name for b in plan(benchmarks, by_priority(benchmarks, list(benchmarks))) if budget.skip_reason(b) is None
    ]
    assert runs == ["base", "small"]  # estimates only: no row ran, so 5 minutes stay left for each
    assert "expected 6.0 min (estimate) > 5.0 min left" in budget.skipped["goal"]
    assert budget.skipped["after"] == "needs goal, left out" and "no bench.expected_min" in budget.skipped["unknown"]
    summary = budget.summary()
    assert "--budget-min 5" in summary[0] and len(summary) == 4
    assert Budget(None).skip_reason(benchmarks["goal"]) is None and Budget(None).summary() == []
    with pytest.raises(UserError, match="--budget-min must be > 0"):
        Budget(0)


def test_project_gpu_rows_run_headline_first_with_estimates():
    benchmarks = discover(ROOT / "cfgs" / "bench")
    gpu = by_priority(benchmarks, [n for n, b in benchmarks.items() if b.cfg.bench.device == "cuda"])
    assert gpu[:3] == ["resnet18_gpu_baseline", "resnet18_gpu_l2_macs60_kd", "resnet18_gpu_latency"]
    assert all(benchmarks[n].cfg.bench.expected_min > 0 for n in gpu)
    base = benchmarks["resnet18_gpu_baseline"].cfg
    assert base.bench.expected_min <= 3.0 and base.bench.targets["max_wall_min"] <= 3.0
    assert (base.data.name, base.train.amp, base.train.channels_last) == ("packed", "bf16", True)
