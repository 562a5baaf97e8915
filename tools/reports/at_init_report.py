"""scripts.at_init_report: the report across pruning-at-initialization runs (accuracy by compression,
each run's report, AMP vs FP32, weight histograms) into report_all.md, printed as well.

    uv run python -m scripts.at_init_report results/prune_at_init/cifar10_resnet20_singleshot
"""

from __future__ import annotations

from pathlib import Path

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


def at_init_report(args) -> None:
    """scripts.at_init_report's whole command: `args` as its parse_args returns them."""
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
