"""Structured pruning: remove whole channels (dependency-aware), fine-tune, and check the goal.

    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet20/best_model.pth \
        --method bn_scale --sparsity 0.5
    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet20/best_model.pth \
        --method l1 --pruning-ratio 0.3
    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet18/best_model.pth \
        --config cfgs/structured_resnet18_goal.yaml --method taylor --target-macs-reduction 0.5
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --target-latency-reduction 0.5 \
        --set structured.latency.backend=onnxruntime structured.latency.batch_size=64
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --method bn_scale \
        --target-macs-reduction 0.5 --set structured.bn_scale.epochs=10 finetune.kd.alpha=0.7

--sparsity (alias --target-macs-reduction) is the fraction of FLOPs removed, as in the bootcamp's
"Target Sparsity 50% ... FLOPs (50.0% reduction)": the channel ratio is searched until the MACs
(FLOPs = 2 x MACs) land within structured.target_tolerance of it. --pruning-ratio removes a
fraction of channels instead. The run prints which of the two it used.

--resume <run folder>/last.pth continues a killed run's final fine-tuning from its last finished
epoch (the pruned module and the baseline figures come from that file; pruning is not redone).

The model and data come from the config stored in the checkpoint; --config / --set / flags
override it (structured.*, finetune.*). Prints the baseline, each pruning round, the model after
pruning, fine-tuning epochs and a final block ending in "Goal MET/NOT MET". Writes
results/structured/<method>_sp<ratio>/ (--pruning-ratio, or --sparsity named as the bootcamp names it;
<method>_macs<target> for --target-macs-reduction or a YAML target; --save-dir to choose):
pruned_model_state.pth (weights-only: state dict + structure; what the other scripts load),
pruned_model.pth (a bare pickled module: plain torch.load returns it; skipped with a notice when the
model cannot be pickled), metrics.yaml, config.yaml, log.csv, logs/, and last COMPLETE (or FAILED
with the error line, e.g. for a MACs target it cannot reach). Re-pruning a pruned model reports
against the original baseline as well as the parent, and judges the goal against the original
(the lineage travels in the pruned model).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/prune_structured.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from pathlib import Path

from tools.core.cli import base_parser
from tools.core.errors import UserError, run_cli
from tools.core.run_folder import LOG_CSV, LOGS, RunFolder
from tools.pruning.structured import GRANULARITIES, STRUCTURED_METHODS
from tools.runs.prune_structured import (
    METRICS,
    PRUNED_MODEL,
    PRUNED_MODEL_STATE,
    check_structured_config,
    check_structured_resume,
    final_block,
    run_structured,
    structured_name,
)
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.training.fit import read_prune_resume, resumed_checkpoint


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", help="best_model.pth of a trained model (or any .pth eval loads)")
    parser.add_argument("--resume", help="<run folder>/last.pth: continue its final fine-tuning (no re-pruning)")
    parser.add_argument("--method", help=f"{' | '.join(STRUCTURED_METHODS)} (structured.method)")
    parser.add_argument("--granularity", help=f"{' | '.join(GRANULARITIES)} (structured.granularity)")
    target = parser.add_mutually_exclusive_group()
    # --sparsity is the bootcamp's flag: "sparsity 0.5" there means half the FLOPs gone, so it
    # sets the MACs target (FLOPs = 2 x MACs: the same fraction), not the channel ratio.
    target.add_argument("--target-macs-reduction", type=float,
                        help="fraction of FLOPs (= MACs) to remove, e.g. 0.5, reached within structured.target_tolerance "
                             "(structured.target_macs_reduction); run folder <method>_macs<target>")
    target.add_argument("--sparsity", type=float,
                        help="the bootcamp's name of --target-macs-reduction; run folder <method>_sp<target>, as the "
                             "bootcamp names it")
    target.add_argument("--pruning-ratio", type=float,
                        help="fraction of channels to remove instead, e.g. 0.3 (structured.pruning_ratio)")
    target.add_argument("--target-latency-reduction", type=float,
                        help="fraction of measured latency to remove on structured.latency.backend, e.g. 0.5")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (finetune.epochs)")
    parser.add_argument("--iterative-steps", type=int, help="prune-finetune rounds (structured.iterative_steps)")
    return parser.parse_args(argv)


def cli_flags(args) -> dict:
    """Script flags as config keys; a ratio on the command line switches a YAML target off and vice versa."""
    if args.sparsity is not None:  # the seed's spelling of the same target
        args.target_macs_reduction = args.sparsity
    flags = {"structured.method": args.method, "structured.granularity": args.granularity,
             "finetune.epochs": args.epochs, "structured.iterative_steps": args.iterative_steps}
    if args.pruning_ratio is not None:
        flags |= {"structured.pruning_ratio": args.pruning_ratio, "structured.target_macs_reduction": 0.0,
                  "structured.target_latency_reduction": 0.0}
    if args.target_macs_reduction is not None:
        if not 0 < args.target_macs_reduction < 1:
            raise UserError(f"--sparsity / --target-macs-reduction is the fraction of FLOPs removed and must be in (0, 1), "
                            f"e.g. 0.5; got {args.target_macs_reduction:g}")
        flags |= {"structured.target_macs_reduction": args.target_macs_reduction,
                  "structured.target_latency_reduction": 0.0}
    if args.target_latency_reduction is not None:
        flags |= {"structured.target_latency_reduction": args.target_latency_reduction,
                  "structured.target_macs_reduction": 0.0}
    return flags


def target_line(s) -> str:
    """Which knob this run uses: a measured latency target, a FLOPs target (--sparsity) or a channel ratio."""
    basis = "" if s.granularity == "channel" else "non-zero "  # kernel masks leave dense FLOPs as they were
    unit = "channel" if s.granularity == "channel" else "kernel"
    if s.target_latency_reduction > 0:
        lat = s.latency
        return (f"target latency reduction {100 * s.target_latency_reduction:g}% (+-{100 * lat.tolerance:g} pts) "
                f"measured on {lat.backend}, batch {lat.batch_size}, {lat.threads} thread(s) "
                f"(--target-latency-reduction; MACs are reported beside it)")
    if s.target_macs_reduction > 0:
        return (f"target sparsity {100 * s.target_macs_reduction:g}% of {basis}FLOPs (= MACs) removed, searched within "
                f"{100 * s.target_tolerance:g} pt(s) of it (--sparsity / structured.target_macs_reduction; "
                f"the {unit} ratio follows from it)")
    return (f"{unit} ratio {100 * s.pruning_ratio:g}% of {unit}s removed (--pruning-ratio / structured.pruning_ratio; "
            f"the {basis}FLOPs removed follow from it, see the final block)")


def main(argv=None):
    args = parse_args(argv)
    resume = read_prune_resume(args.resume, "prune_structured") if args.resume else None
    checkpoint = resumed_checkpoint(args.checkpoint, resume, args.resume)
    cfg, ckpt, data, model, device = load_checkpoint_run(
        args, flags=cli_flags(args), checkpoint=checkpoint,
        base=(resume["config"], f"checkpoint {args.resume}") if resume else None)
    check_structured_config(cfg)
    if resume is not None:
        check_structured_resume(resume, model, cfg, len(data.train), args.resume)
    run = RunFolder.new(cfg.output.root, "structured", structured_name(cfg.structured, seed_form=args.sparsity is not None),
                        args.save_dir or (Path(args.resume).parent if resume else None)).start(cfg, resume=resume is not None)
    with run:
        prune_in(run.path, cfg, ckpt, data, model, device, checkpoint=str(checkpoint), resume=resume)


def prune_in(run_dir, cfg, ckpt, data, model, device, *, checkpoint: str, resume: dict | None) -> None:
    print(f"run folder: {run_dir}")
    print(f"model {cfg.model.name} on {cfg.data.name} {data.input_shape}, device {device}; method {cfg.structured.method}, "
          f"granularity {cfg.structured.granularity}")
    print(target_line(cfg.structured))
    metrics = run_structured(model, data, cfg=cfg, run_dir=run_dir, device=device, checkpoint=checkpoint,
                             parent=ckpt, resume=resume)
    print(final_block(metrics))
    if PRUNED_MODEL_STATE in metrics["saved_models"]:
        print(f"pruned model: {run_dir / PRUNED_MODEL_STATE}  (weights-only; every script rebuilds the model from it)")
    if PRUNED_MODEL in metrics["saved_models"]:
        print(f"pickled:      {run_dir / PRUNED_MODEL}  (plain torch.load(path, weights_only=False) returns the module)")
    print(f"metrics:      {run_dir / METRICS}")
    if (run_dir / LOGS).is_dir():  # absent when nothing was trained (finetune.epochs 0, no rounds)
        print(f"fine-tuning:  {run_dir / LOG_CSV}; TensorBoard: uv run tensorboard --logdir {run_dir}")


if __name__ == "__main__":
    run_cli(main)
