"""Run each curriculum day's commands on the synthetic data set and write their outputs, error
lines and figures into docs/days/ between the pages' markers; --check compares instead.

    uv run python -m scripts.lessons                     # every day (minutes: each day trains or prunes)
    uv run python -m scripts.lessons --days 1 2 3 8      # these days, after the runs they need
    uv run python -m scripts.lessons --check --days 1 2 3 8
    uv run python -m scripts.lessons --as-written        # the pages' commands as shown, at full settings

--check re-runs the days and exits 2 with one line naming the page and the printed field when a
command no longer runs or its output's structure differs from the page (numbers may move within
the tolerance stated in tools/workflows/lessons.py; timings are not compared). The days'
commands, small settings and quoted mistakes are in tools/workflows/lesson_days.py.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/lessons.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import Parser
from tools.core.errors import run_cli
from tools.workflows.lessons import lessons


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", metavar="DAY", help="days to run, e.g. 1 2 3 8 14b (default: all)")
    parser.add_argument("--check", action="store_true", help="compare with the pages instead of writing them")
    parser.add_argument(
        "--as-written",
        action="store_true",
        help="run every page's commands exactly as shown (full settings, slow) and report which fail; writes nothing",
    )
    parser.add_argument("--workspace", help="scratch folder for the runs (default: a temporary one, removed after)")
    return parser.parse_args(argv)


def main(argv=None):
    lessons(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
