"""Which benchmark rows run first, and which fit in a time budget (`scripts.benchmark --budget-min`).

    uv run python -m scripts.benchmark --run all --device cuda --budget-min 8

    names = by_priority(benchmarks, names)          # bench.priority, highest first: the headline rows
    budget = Budget(minutes=8.0)
    for b in plan(benchmarks, names):
        reason = budget.skip_reason(b)              # None: it fits (or there is no budget)
        print(expected_text(b))                     # "expected 3.0 min (estimate, bench.expected_min)"
    print("\\n".join(budget.summary()))               # the rows left out, and why

A row's duration is `bench.expected_min`: an estimate written into its YAML by whoever designed
the row (the YAML's comment says how it was reckoned), never a measurement; the runner prints it
before the row starts and the measured minutes after. With a budget, a row runs only when its
estimate fits in the minutes left (the budget minus the real time spent so far), a row whose
dependency was left out is left out too, and a row without an estimate is left out (nothing says
it fits). Rows that did not fit are listed at the end; a later run with more time resumes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tools.core.errors import UserError
from tools.workflows.bench_recipe import Benchmark


def by_priority(benchmarks: dict[str, Benchmark], names: list[str]) -> list[str]:
    """`names`, highest bench.priority first; equal priorities keep their order."""
    return sorted(names, key=lambda name: -benchmarks[name].cfg.bench.priority)


def expected_text(b: Benchmark) -> str:
    minutes = b.cfg.bench.expected_min
    return f"expected {minutes:.1f} min (estimate, bench.expected_min)" if minutes else "no duration estimate"


@dataclass
class Budget:
    minutes: float | None  # None: no budget, every row runs
    started_s: float = field(default_factory=time.perf_counter)
    skipped: dict[str, str] = field(default_factory=dict)  # row -> why it was left out

    def __post_init__(self):
        if self.minutes is not None and self.minutes <= 0:
            raise UserError(f"--budget-min must be > 0 minutes, got {self.minutes:g}")

    def left_min(self) -> float:
        return self.minutes - (time.perf_counter() - self.started_s) / 60

    def skip_reason(self, b: Benchmark) -> str | None:
        """Why `b` must be left out of this run (None: run it); the reason is remembered."""
        if self.minutes is None:
            return None
        reason = None
        left_out = [need for need in b.cfg.bench.needs if need in self.skipped]
        expected = b.cfg.bench.expected_min
        if left_out:
            reason = f"needs {', '.join(left_out)}, left out"
        elif not expected:
            reason = "no bench.expected_min estimate, so nothing says it fits"
        elif expected > self.left_min():
            reason = f"expected {expected:.1f} min (estimate) > {max(self.left_min(), 0):.1f} min left"
        if reason:
            self.skipped[b.name] = reason
        return reason

    def summary(self) -> list[str]:
        if not self.skipped:
            return []
        return [
            f"\n== left out to stay within --budget-min {self.minutes:g} ({len(self.skipped)} rows; "
            f"run them with more time, finished rows are kept):"
        ] + [f"   {name}: {reason}" for name, reason in self.skipped.items()]
