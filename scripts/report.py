"""Collect run folders into report.md with tables and plots.

    uv run python -m scripts.report --runs results/pipeline/quickstart
    uv run python -m scripts.report --runs results/unstructured results/structured --out results/report

Reads every metrics.yaml (train, prune_unstructured, prune_structured runs) and profile.yaml
under the given folders; whatever is missing is left out with a note, so a report of partial
results still renders. Sections follow the bootcamp's template: Baseline results, Method
comparison, Ablations, Failure cases (over-pruned runs, collapsed layers, sensitivity outliers:
add results/sensitivity to --runs) and Recommendations (computed from the measured table). Writes
report.md, its PNGs and final_comparison.csv (Method,Sparsity,FLOPs_Reduction,Accuracy_Drop,
Goal_Met) into --out (default: the first folder).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/report.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import Parser
from tools.core.errors import run_cli
from tools.reports.report import report


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="folders holding run folders")
    parser.add_argument("--out", help="where report.md and its PNGs go (default: the first --runs folder)")
    return parser.parse_args(argv)


def main(argv=None):
    report(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
