"""Run a grid of pruning (or training) runs, resumably, and find the accuracy-vs-cost frontier.

    uv run python -m scripts.sweep --sweep cfgs/sweeps/quickstart_unstructured.yaml --workers 2

A sweep YAML names the script, a base config, the grid (dotted config key -> list of values),
the checkpoint to prune and the metric/cost keys of the frontier. Each point is a normal run
folder under results/sweep/<name>/<point>/; a point is skipped when it finished from the same base
config, grid values, --set, checkpoint and project version, so an interrupted sweep re-run finishes
only what is missing and a changed one re-runs what changed. One sweep at a time per folder.
Writes sweep.csv, sweep.yaml (rows and Pareto frontier) and pareto.png into results/sweep/<name>/.

A misspelt grid key, metric or cost is refused before any point runs. Ctrl-C (or SIGTERM) stops
the sweep: queued points do not start, running ones are terminated (their folders stay resumable),
none is recorded as done, and it exits 130 (143) with one line; the same command finishes the rest.
A point folder another live run still holds (an orphan of a killed sweep) is never deleted.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/sweep.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import UserError, run_cli
from tools.workflows.sweep import sweep


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--sweep", required=True, help="sweep YAML (script, config, grid, checkpoint)")
    parser.add_argument("--workers", type=int, default=1, help="points run in parallel processes")
    args = parser.parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    return args


def main(argv=None):
    sweep(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
