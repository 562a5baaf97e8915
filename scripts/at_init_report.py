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

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/at_init_report.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import argparse
from pathlib import Path

from tools.core.errors import run_cli
from tools.core.io import atomic_write_text
from tools.reports.at_init import (
    accuracy_table,
    amp_table,
    block_density,
    block_table,
    first_block,
    load_point_model,
    load_run,
    parse_point,
    plot_weight_histograms,
    run_report,
)


def parse_args(argv):
    from tools.core.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders written by scripts.prune_at_init")
    parser.add_argument("--compression", type=float, default=1.0, help="compression of the accuracy table (default 1)")
    parser.add_argument("--histogram", action="append", default=[], metavar="PRUNER:COMPRESSION[:LEVEL]",
                        help="weight histograms of that run (of the first run folder), e.g. synflow:1")
    parser.add_argument("--block", help="module whose convs' densities are tabulated (default: the first block)")
    parser.add_argument("--out", help="folder for report_all.md and the histograms (default: the first run folder)")
    return parser.parse_args(argv)


def histogram_section(run: dict, spec: str, block: str | None, out: Path) -> str:
    pruner, compression, level = parse_point(spec)
    model, point = load_point_model(run, pruner, compression, level)
    name = f"weights_{pruner}_c{compression:g}" + (f"_L{level}" if level else "") + ".png"
    title = f"{pruner}, compression {compression:g} (density {point['density']:.4f}, sparsity {point['sparsity']:.4f})"
    trained = f", after {point['post_epochs']} post-training epoch(s)" if point.get("post_epochs") else ", untrained"
    plot_weight_histograms(model, out / name, title + trained)
    block = block or first_block(model)
    text = f"### {title}\n\nHistograms: {out / name}"
    if block is None:
        return text + "\n\n(the model has no block of two or more convs; pass --block)"
    return text + f"\n\nDensity of the convs of {block}:\n\n" + block_table(block_density(model, block))


def main(argv=None):
    args = parse_args(argv)
    runs = [load_run(Path(d)) for d in args.run_dirs]
    out = Path(args.out) if args.out else runs[0]["dir"]
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# Pruning at initialization", accuracy_table(runs, compression=args.compression)]
    parts += [run_report(run) for run in runs]
    amp = amp_table(runs)
    if amp:
        parts += ["## AMP vs FP32", amp]
    parts += [histogram_section(runs[0], spec, args.block, out) for spec in args.histogram]
    text = "\n\n".join(parts) + "\n"
    atomic_write_text(out / "report_all.md", text)
    print(text)
    print(f"wrote {out / 'report_all.md'}")


if __name__ == "__main__":
    run_cli(main)
