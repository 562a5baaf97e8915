"""scripts.prune_at_init: one pruning-at-initialization experiment (pruners x compressions, or
multishot levels) in its run folder, then its curves and report.md.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml

The experiment itself is tools.runs.prune_at_init; this sits with the reports because it ends in
the experiment's report (tools.reports.at_init).
"""

from __future__ import annotations

from datasets import build_data
from tools.core.cli import resolve_config
from tools.core.config import config_to_dict
from tools.core.device import resolve_device, seed_everything, set_num_threads
from tools.core.io import atomic_write_text
from tools.core.run_folder import REPORT, RESULTS_CSV, RunFolder
from tools.reports.at_init import load_run, plot_curves, run_report
from tools.runs.prune_at_init import RunContext, make_plan, run_experiment


def prune_at_init(args, flags: dict) -> None:
    """scripts.prune_at_init's whole command: `args` as its parse_args returns them, `flags` its config keys."""
    cfg = resolve_config(args, flags=flags)
    plan = make_plan(cfg.pai)  # bad pai.* values fail before any data is loaded
    set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = build_data(cfg.data, seed=cfg.train.seed, device=device)
    name = cfg.output.name or f"{cfg.data.name}_{cfg.model.name}_{plan.experiment}"
    with RunFolder.new(cfg.output.root, "prune_at_init", name, args.save_dir).start(cfg) as run:
        experiment_in(run.path, cfg, data, device, plan)


def experiment_in(run_dir, cfg, data, device, plan) -> None:
    print(
        f"run folder: {run_dir}\nmodel {cfg.model.name} on {cfg.data.name} {data.input_shape}, "
        f"{data.train.num_samples} training / {data.test.num_samples} test images, device {device}"
    )
    print(plan.describe())
    ctx = RunContext(cfg=cfg, data=data, device=device, run_dir=run_dir, config=config_to_dict(cfg))
    rows = run_experiment(ctx, plan)
    plot_curves(rows, run_dir)
    report = run_report(load_run(run_dir))
    atomic_write_text(run_dir / REPORT, report + "\n")
    print("\n" + report)
    print(f"\nwrote {run_dir / RESULTS_CSV}, {run_dir / 'results.yaml'}, {run_dir / REPORT}, *_vs_compression.png")
    print(
        f"tables across runs and weight histograms: uv run python -m scripts.at_init_report {run_dir} --histogram "
        f"{plan.pruners[-1]}:{plan.compressions[-1]:g}"
    )
