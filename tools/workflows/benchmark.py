"""scripts.benchmark's three actions: list the recipes and their state, run rows (what they need
first, headline rows first, within a time budget), and rebuild docs/benchmarks.md's tables.

    uv run python -m scripts.benchmark --list
    uv run python -m scripts.benchmark --run resnet20_l2_macs50_ft6     # its baseline first, if not done
    uv run python -m scripts.benchmark --doc-only

The recipes: tools.workflows.bench_recipe; running one: bench_runner; the doc: bench_doc; the
order and the budget of `--run all`: bench_budget.
"""

from __future__ import annotations

from pathlib import Path

from tools.core.errors import UserError
from tools.workflows.bench_budget import Budget, by_priority, expected_text
from tools.workflows.bench_doc import write_doc
from tools.workflows.bench_recipe import COMMAND, Benchmark, discover, plan
from tools.workflows.bench_runner import cuda_available, run_benchmark, script_argv


def benchmark(args) -> None:
    """The whole command: `args` as scripts.benchmark parses them."""
    benchmarks = discover(Path(args.bench_dir))
    results = Path(args.results)
    cuda = cuda_available()
    if args.list:
        return list_benchmarks(benchmarks, results)
    if args.run:
        run_rows(args, benchmarks, results, cuda)
    print(f"wrote {write_doc(benchmarks, results_root=results, doc=Path(args.doc), cuda=cuda)}")


def list_benchmarks(benchmarks: dict[str, Benchmark], results: Path) -> None:
    for b in benchmarks.values():
        state = b.state(results)
        needs = f", needs {', '.join(b.cfg.bench.needs)}" if b.cfg.bench.needs else ""
        print(f"{b.name:32s} {state:8s} {b.cfg.bench.device:5s} {b.script} -> table {b.cfg.bench.table}{needs}")
        print(f"    {b.description}" if b.description else "", end="\n" if b.description else "")
        seeds = (
            f"\n      (one run per seed {', '.join(map(str, b.seeds))}; this is seed {b.seeds[0]}'s)"
            if b.cfg.bench.seeds
            else ""
        )
        print(
            f"    {COMMAND.format(name=b.name)}\n    = python -m scripts.{b.script} "
            f"{' '.join(script_argv(b, benchmarks, results))}{seeds}"
        )


def run_rows(args, benchmarks: dict[str, Benchmark], results: Path, cuda: bool) -> None:
    names = args.run
    if names == ["all"]:
        names = by_priority(benchmarks, [n for n, b in benchmarks.items() if args.device in (None, b.cfg.bench.device)])
    elif args.device:
        raise UserError("--device filters --run all only; name the benchmarks or drop --device")
    budget = Budget(args.budget_min)
    for b in plan(benchmarks, names):
        if not b.todo(results, args.seeds):
            print(f"== {b.name}: done earlier ({b.run_dir(results)}), skipped")
            continue
        if b.cfg.bench.device == "cuda" and not cuda:
            if args.run == ["all"]:
                print(f"== {b.name}: needs a CUDA GPU and none is visible, left pending")
                continue
            raise UserError(
                f"benchmark {b.name} is defined for a CUDA GPU and torch sees none; "
                f"run it on a GPU machine (or --run all to skip GPU rows)"
            )
        if reason := budget.skip_reason(b):
            print(f"== {b.name}: left out, {reason}")
            continue
        print(f"\n== {b.name}: {expected_text(b)}", flush=True)
        print(f"== {b.name}: finished in {run_benchmark(b, benchmarks, results, args.seeds) / 60:.1f} min (measured)")
    for line in budget.summary():
        print(line)
