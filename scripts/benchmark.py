"""Run the benchmarks of cfgs/bench/ and rebuild the tables of docs/benchmarks.md from their run folders.

    uv run python -m scripts.benchmark --list
    uv run python -m scripts.benchmark --run resnet20_l2_macs50_ft6     # its baseline first, if not done
    uv run python -m scripts.benchmark --run all                         # every row this machine can run
    uv run python -m scripts.benchmark --run all --device cuda           # the GPU rows only
    python -m scripts.benchmark --run all --device cuda --budget-min 8   # headline first, what fits in 8 min
    uv run python -m scripts.benchmark --doc-only                        # just regenerate the doc

Each benchmark writes into results/bench/<name>/ (its log beside it, <name>.log), a row with
`bench.seeds` one folder per seed, results/bench/<name>/seed<k>/. Finished runs
are skipped, so re-running resumes where it stopped; a train row continues from its last.pth.
Rows defined for CUDA stay "pending" in the doc until they have run on a GPU. `--run all` runs
rows with a higher `bench.priority` first; each row's estimated duration (`bench.expected_min`)
is printed before it starts, and with `--budget-min` rows that would not fit are left out and
listed at the end (see tools/workflows/bench_budget.py).
"""

from __future__ import annotations

# run as a file (python scripts/benchmark.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import Parser
from tools.core.errors import run_cli
from tools.workflows.benchmark import benchmark


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list the benchmarks and their state")
    action.add_argument("--run", nargs="+", metavar="NAME", help="benchmarks to run (with what they need), or all")
    action.add_argument("--doc-only", action="store_true", help="only regenerate the doc's tables")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="K",
        help="with --run: only these seeds of seeded rows (e.g. seed 0 of every row first, the rest later)",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], help="with --run all: only the rows defined for this device"
    )
    parser.add_argument(
        "--budget-min",
        type=float,
        help="with --run: leave out rows whose bench.expected_min "
        "estimate does not fit in the minutes left; they are listed at the end",
    )
    parser.add_argument("--bench-dir", default="cfgs/bench", help="folder of benchmark YAMLs (default cfgs/bench)")
    parser.add_argument("--results", default="results/bench", help="run folders go here (default results/bench)")
    parser.add_argument("--doc", default="docs/benchmarks.md", help="markdown file whose tables are regenerated")
    return parser.parse_args(argv)


def main(argv=None):
    benchmark(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
