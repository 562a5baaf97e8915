"""The whole bootcamp in one command: train -> eval -> unstructured prune + fine-tune ->
structured prune to the goal + fine-tune -> export (verified) -> INT8 quantization (ONNX Runtime)
of the structured and the dense model -> profile -> [structured prune to a measured latency
target, `pipeline.latency_target_reduction`] -> report.

    uv run python -m scripts.pipeline --config cfgs/quickstart.yaml
    uv run python -m scripts.pipeline --config cfgs/quickstart.yaml --force      # redo every step

Everything lands in one run folder (results/pipeline/<config name>/ unless --save-dir), one
sub-folder per step. A step is skipped when steps.yaml records that it finished from the same
resolved config, command line, input checkpoints and project version; otherwise it runs again,
and so does every step after it (a changed `--set train.epochs=4` re-runs everything). A failed
step stops the pipeline with its error (also in <run folder>/FAILED) and leaves the earlier steps'
outputs intact. One pipeline at a time may write into a run folder (a second one exits 2 naming
the first).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/pipeline.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import time
from pathlib import Path

from tools.core.cli import base_parser, resolve_config, run_name
from tools.core.config import config_to_dict
from tools.core.errors import run_cli
from tools.core.io import read_yaml_mapping
from tools.core.run_folder import METRICS, REPORT, RunFolder
from tools.workflows.pipeline import pipeline_steps, run_steps


def parse_args(argv):
    parser = base_parser(__doc__, config_required=True)
    parser.add_argument("--force", action="store_true", help="redo every step, discarding earlier outputs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)  # fail fast on a bad config, before any step runs
    run_dir = Path(args.save_dir) if args.save_dir else Path(cfg.output.root) / "pipeline" / run_name(cfg, args.config, "pipeline")
    steps = pipeline_steps(config=args.config, run_dir=run_dir, sets=args.set,
                           latency_target=cfg.pipeline.latency_target_reduction)
    start = time.perf_counter()
    # Locked while it runs; COMPLETE at the end, FAILED with the failing step's error. A re-run continues
    # a finished pipeline (its steps decide what runs again), so a COMPLETE folder is not refused.
    with RunFolder(run_dir).start(resume=True):
        run_steps(steps, run_dir=run_dir, config=config_to_dict(cfg), force=args.force)
        print_verdict(run_dir, time.perf_counter() - start)  # every step's result is this run's or current


def print_verdict(run_dir: Path, elapsed_s: float) -> None:
    metrics = read_yaml_mapping(run_dir / "structured" / METRICS) or {}
    goal = metrics.get("goal", {})
    verdict = "MET" if metrics.get("goal_met") else "NOT MET"
    print(f"\npipeline finished in {elapsed_s:.0f} s: structured {metrics.get('method')} pruning removed "
          f"{metrics.get('flops_reduction_pct', 0):.1f}% of FLOPs (FLOPs = 2 x MACs) for a "
          f"{metrics.get('accuracy_drop', 0):.2f}-point top-1 drop: goal {verdict} "
          f"(>={goal.get('min_flops_reduction_pct')}% FLOPs, <={goal.get('max_accuracy_drop')} pts drop)")
    latency = read_yaml_mapping(run_dir / "structured_latency" / METRICS) or {}
    if latency.get("latency"):
        lat = latency["latency"]
        print(f"latency-targeted row: measured latency -{lat['measured_reduction_pct']:.1f}% on {lat['backend']} "
              f"batch {lat['batch_size']} (target {lat['target_pct']:g}%), {latency['flops_reduction_pct']:.1f}% of FLOPs "
              f"removed, {latency.get('accuracy_drop', 0):.2f}-point top-1 drop")
    print(f"report: {run_dir / REPORT}")


if __name__ == "__main__":
    run_cli(main)
