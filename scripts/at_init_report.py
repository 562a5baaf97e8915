"""The assignment's tables and weight histograms from prune_at_init run folders.

    uv run python -m scripts.at_init_report results/prune_at_init/resnet20_grid --histogram synflow:1
    uv run python -m scripts.at_init_report results/prune_at_init/resnet20_grid results/prune_at_init/fc_grid --compression 1
    uv run python -m scripts.at_init_report results/prune_at_init/grid_fp32 results/prune_at_init/grid_amp   # AMP vs FP32

Tables (markdown, printed and written to <out>/report_all.md): test top-1 per data set /
architecture / pruner at `--compression` (default 1: density 0.1 kept, sparsity 0.9); then per
run folder accuracy, test-set inference time and dense / non-zero FLOPs (FLOPs = 2 x MACs) for
every pruner x compression, training wall time and peak memory, and traced convolution time.

Given a run trained in FP32 and one with mixed precision (`--quantization` / `--amp`), it adds the
AMP vs FP32 table: training wall time, peak memory and accuracy per point, or "needs CUDA" when
both trained on the CPU (where mixed precision falls back to fp32).

`--histogram PRUNER:COMPRESSION[:LEVEL]` (repeatable) plots the remaining weights of that run,
one subplot per layer, into weights_<pruner>_c<compression>.png, and tabulates the density of the
first block's convs (`--block` names another module, e.g. layer2.0).
Writes into the first run folder unless --out is given.
"""

from __future__ import annotations

# run as a file (python scripts/at_init_report.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import argparse

from tools.core.errors import run_cli
from tools.reports.at_init_report import at_init_report


def parse_args(argv):
    from tools.core.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders written by scripts.prune_at_init")
    parser.add_argument("--compression", type=float, default=1.0, help="compression of the accuracy table (default 1)")
    parser.add_argument(
        "--histogram",
        action="append",
        default=[],
        metavar="PRUNER:COMPRESSION[:LEVEL]",
        help="weight histograms of that run (of the first run folder), e.g. synflow:1",
    )
    parser.add_argument("--block", help="module whose convs' densities are tabulated (default: the first block)")
    parser.add_argument("--out", help="folder for report_all.md and the histograms (default: the first run folder)")
    return parser.parse_args(argv)


def main(argv=None):
    at_init_report(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
