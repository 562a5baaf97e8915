"""Structured pruning: remove whole channels (dependency-aware), fine-tune, and check the goal.

    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet20/best_model.pth \
        --method l1 --sparsity 0.3
    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet18/best_model.pth \
        --config cfgs/structured_resnet18_goal.yaml --method taylor --target-macs-reduction 0.5
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --target-latency-reduction 0.5 \
        --set structured.latency.backend=onnxruntime structured.latency.batch_size=64
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --method bn_scale \
        --target-macs-reduction 0.5 --set structured.bn_scale.epochs=10 finetune.kd.alpha=0.7

The model and data come from the config stored in the checkpoint; --config / --set / flags
override it (structured.*, finetune.*). Prints the baseline, each pruning round, the model after
pruning, fine-tuning epochs and a final block ending in "Goal MET/NOT MET". Writes
results/structured/<method>_sp<ratio>/ (or _macs<target>; --save-dir to choose): pruned_model.pth
(a bare pickled module: plain torch.load returns it), metrics.yaml, config.yaml, log.csv, logs/.
"""

from __future__ import annotations

from tools.cli import base_parser, load_checkpoint_run
from tools.config import save_config
from tools.errors import run_cli
from tools.io import make_run_dir
from tools.structured_run import (
    METRICS,
    PRUNED_MODEL,
    check_structured_config,
    final_block,
    run_structured,
    structured_run_name,
)


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="best_model.pth of a trained model (or any .pth eval loads)")
    parser.add_argument("--method", help="l1 | l2 | bn_scale | taylor | lamp | fpgm | random (structured.method)")
    parser.add_argument("--granularity", help="channel | kernel | intra_kernel (structured.granularity)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--sparsity", type=float, help="fraction of channels to remove, e.g. 0.3 (structured.pruning_ratio)")
    target.add_argument("--target-macs-reduction", type=float,
                        help="fraction of MACs to remove, e.g. 0.5, reached within structured.target_tolerance")
    target.add_argument("--target-latency-reduction", type=float,
                        help="fraction of measured latency to remove on structured.latency.backend, e.g. 0.5")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (finetune.epochs)")
    parser.add_argument("--iterative-steps", type=int, help="prune-finetune rounds (structured.iterative_steps)")
    return parser.parse_args(argv)


def cli_flags(args) -> dict:
    """Script flags as config keys; a ratio on the command line switches a YAML target off and vice versa."""
    flags = {"structured.method": args.method, "structured.granularity": args.granularity,
             "finetune.epochs": args.epochs, "structured.iterative_steps": args.iterative_steps}
    if args.sparsity is not None:
        flags |= {"structured.pruning_ratio": args.sparsity, "structured.target_macs_reduction": 0.0,
                  "structured.target_latency_reduction": 0.0}
    if args.target_macs_reduction is not None:
        flags |= {"structured.target_macs_reduction": args.target_macs_reduction,
                  "structured.target_latency_reduction": 0.0}
    if args.target_latency_reduction is not None:
        flags |= {"structured.target_latency_reduction": args.target_latency_reduction,
                  "structured.target_macs_reduction": 0.0}
    return flags


def target_text(s) -> str:
    if s.target_latency_reduction > 0:
        lat = s.latency
        return (f"target latency reduction {100 * s.target_latency_reduction:g}% (+-{100 * lat.tolerance:g} pts) on "
                f"{lat.backend}, batch {lat.batch_size}, {lat.threads} thread(s)")
    if s.target_macs_reduction > 0:
        return f"target MACs reduction {100 * s.target_macs_reduction:g}% (+-{100 * s.target_tolerance:g} pts)"
    return f"channel ratio {s.pruning_ratio:g}"


def main(argv=None):
    args = parse_args(argv)
    cfg, _, data, model, device = load_checkpoint_run(args, flags=cli_flags(args))
    check_structured_config(cfg)
    run_dir = make_run_dir(cfg.output.root, "structured", structured_run_name(cfg.structured), args.save_dir)
    cfg.output.name = run_dir.name
    save_config(cfg, run_dir / "config.yaml")
    print(f"run folder: {run_dir}")
    print(f"model {cfg.model.name} on {cfg.data.name} {data.input_shape}, device {device}; method {cfg.structured.method}, "
          f"granularity {cfg.structured.granularity}, " + target_text(cfg.structured))
    metrics = run_structured(model, data, cfg=cfg, run_dir=run_dir, device=device, checkpoint=str(args.checkpoint))
    print(final_block(metrics))
    print(f"pruned model: {run_dir / PRUNED_MODEL}  (plain torch.load(path, weights_only=False) returns the module)")
    print(f"metrics:      {run_dir / METRICS}")
    if (run_dir / "logs").is_dir():  # absent when nothing was trained (finetune.epochs 0, no rounds)
        print(f"fine-tuning:  {run_dir / 'log.csv'}; TensorBoard: uv run tensorboard --logdir {run_dir}")


if __name__ == "__main__":
    run_cli(main)
