"""Unstructured or N:M pruning of a trained model, with fine-tuning: one-shot or iterative.

    uv run python -m scripts.prune_unstructured --checkpoint results/train/quickstart/best_model.pth --method global --sparsity 0.8
    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method l1 --sparsity 0.9 --iterative --num-iterations 5
    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method lamp --sparsity 0.9 --save-compressed
    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method nm --nm 2:4
    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method l1 --sparsity-file results/sensitivity/resnet20_l1/layer_sparsity.yaml

Methods: l1, global, random, taylor, movement, lamp, nm (see tools.pruning.unstructured). Settings come
from the checkpoint's config < --config < --set < flags; the `unstructured` section holds the
pruning keys and `finetune` the fine-tuning (learning rate 0 = one tenth of training's).

--resume <run folder>/last.pth continues a killed run's final fine-tuning from its last finished
epoch (the masks and baseline figures come from that file; pruning is not redone); a run killed
before its final fine-tuning started has no last.pth and starts again.

Writes results/unstructured/<method>_<mode>_sp<sparsity>/ (or --save-dir): pruned_model.pth (plain
weights with exact zeros; loads in eval/export/profile), metrics.yaml, config.yaml, logs/ and
finetune*/ (TensorBoard, log.csv), layer_weights.png, and with --save-compressed
pruned_model_compressed.pth (bitmask/CSR sparse storage, loads the same way), last.pth (resume), and last COMPLETE
(FAILED with the error line when it fails). Re-pruning a pruned_model.pth also reports the drop
against the original baseline (the lineage travels in the checkpoint).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/prune_unstructured.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import time
from dataclasses import dataclass, replace
from pathlib import Path

from tools.core.cli import base_parser
from tools.core.config import config_to_dict
from tools.core.errors import UserError, run_cli
from tools.core.io import atomic_write_yaml
from tools.core.lineage import LINEAGE, child_lineage, versus
from tools.core.run_folder import METRICS, PRUNED_MODEL, RunFolder
from tools.measure.metrics import layer_sparsity_table
from tools.modeling.checkpoint import save_checkpoint
from tools.pruning.unstructured import (
    METHODS,
    MODES,
    SCHEDULES,
    natural_mode,
    print_layerwise_sparsity,
    prunable_targets,
    remove_pruning_reparameterization,
    validate_nm,
    validate_sparsity,
)
from tools.reports.sparsity_plots import plot_layer_weights
from tools.runs.prune_unstructured import (
    PruneJob,
    accuracy_and_cost,
    finetune_loss,
    format_figures,
    format_nm,
    make_plan,
    pruning_metrics,
    restore_masks,
    run_pruning,
    semi_structured_section,
    storage_sizes,
    tensorboard_logger,
)
from tools.measure.describe import test_set_record
from tools.training.fit import PRUNE_STATE, check_resume, finetune_train_config, read_prune_resume, resumed_checkpoint
from tools.modeling.checkpoint_run import load_checkpoint_run


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", help="a trained model (.pth written by train)")
    parser.add_argument("--resume", help="<run folder>/last.pth: continue its final fine-tuning (no re-pruning)")
    parser.add_argument("--method", help=f"overrides unstructured.method: {', '.join(METHODS)}")
    parser.add_argument("--mode", help=f"overrides unstructured.mode: {', '.join(MODES)}")
    parser.add_argument("--sparsity", type=float, help="overrides unstructured.sparsity: fraction pruned, in [0, 1)")
    parser.add_argument("--sparsity-file", help="YAML of per-layer sparsities (e.g. from scripts.sensitivity)")
    parser.add_argument("--iterative", action="store_true", default=None, help="prune in steps with fine-tuning between")
    parser.add_argument("--num-iterations", type=int, help="overrides unstructured.num_iterations (implies --iterative)")
    parser.add_argument("--schedule", help=f"overrides unstructured.schedule: {', '.join(SCHEDULES)}")
    parser.add_argument("--nm", help="N:M pattern for --method nm, e.g. 2:4 (overrides unstructured.n/m)")
    parser.add_argument("--epochs", type=int, help="overrides finetune.epochs (after the last step)")
    parser.add_argument("--save-compressed", action="store_true", default=None, help="also write sparse storage")
    return parser.parse_args(argv)


def parse_nm(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise UserError(f"--nm must look like N:M with integers, e.g. 2:4, got {text!r}")
    return int(n), int(m)


def cli_flags(args) -> dict:
    """Script flags as dotted config keys; obviously bad values fail here, before any loading."""
    n, m = parse_nm(args.nm)
    if n is not None:
        validate_nm(n, m)
    if args.sparsity is not None:
        validate_sparsity(args.sparsity, "--sparsity")
    if args.method is not None:
        natural_mode(args.method)  # rejects an unknown method
    iterative = True if args.num_iterations is not None else args.iterative
    return {"unstructured.method": args.method, "unstructured.mode": args.mode, "unstructured.sparsity": args.sparsity,
            "unstructured.sparsity_file": args.sparsity_file, "unstructured.iterative": iterative,
            "unstructured.num_iterations": args.num_iterations, "unstructured.schedule": args.schedule,
            "unstructured.n": n, "unstructured.m": m, "finetune.epochs": args.epochs,
            "unstructured.save_compressed": args.save_compressed}


def main(argv=None):
    args = parse_args(argv)
    resume = read_prune_resume(args.resume, "prune_unstructured") if args.resume else None
    checkpoint = resumed_checkpoint(args.checkpoint, resume, args.resume)
    cfg, ckpt, data, model, device = load_checkpoint_run(
        args, flags=cli_flags(args), checkpoint=checkpoint,
        base=(resume["config"], f"checkpoint {args.resume}") if resume else None)
    ucfg = cfg.unstructured
    if args.nm is not None and ucfg.method != "nm":
        raise UserError(f"--nm {args.nm} applies to --method nm only, but the method is {ucfg.method}; "
                        f"add --method nm or drop --nm")
    plan = make_plan(ucfg)
    targets = prunable_targets(model, keep_first_conv_dense=ucfg.keep_first_conv_dense,
                               keep_classifier_dense=ucfg.keep_classifier_dense, prune_biases=ucfg.prune_biases,
                               prune_bn=ucfg.prune_bn)
    plan.check_targets(targets)
    ft_cfg = finetune_train_config(cfg.train, cfg.finetune)
    # The distillation teacher is the unpruned model: taken before any mask is installed.
    loss_fn = finetune_loss(model, kd_alpha=cfg.finetune.kd.alpha, kd_temperature=cfg.finetune.kd.temperature,
                            label_smoothing=cfg.finetune.label_smoothing)
    if resume is not None:
        check_unstructured_resume(resume, model, targets, plan, replace(ft_cfg, epochs=cfg.finetune.epochs),
                                  len(data.train), args.resume)
    save_dir = args.save_dir or (Path(args.resume).parent if resume else None)
    with RunFolder.new(cfg.output.root, "unstructured", plan.run_name, save_dir).start(cfg, resume=resume is not None) as run:
        prune_in(run.path, args, cfg, ckpt, data, model, device,
                 Pruning(plan, targets, ft_cfg, loss_fn, checkpoint, resume))


@dataclass
class Pruning:
    """What the run inside its folder works from, decided before the folder was claimed."""
    plan: object
    targets: list
    ft_cfg: object
    loss_fn: object
    checkpoint: object
    resume: dict | None


def prune_in(run_dir, args, cfg, ckpt, data, model, device, p: Pruning) -> None:
    plan, targets, ft_cfg, loss_fn, checkpoint, resume = p.plan, p.targets, p.ft_cfg, p.loss_fn, p.checkpoint, p.resume
    config = config_to_dict(cfg)
    print(f"run folder: {run_dir}\nmodel {cfg.model.name} on {cfg.data.name} {data.input_shape}, device {device}")
    start = time.perf_counter()
    baseline = resume[PRUNE_STATE]["baseline"] if resume else accuracy_and_cost(model, data, device)
    print(format_figures("baseline", baseline))
    lineage = child_lineage(ckpt, checkpoint=str(checkpoint), figures=baseline)
    print(plan.describe(targets, ft_cfg.lr, cfg.finetune.epochs))
    if resume is not None:
        print(f"resuming the final fine-tuning after epoch {resume['epoch']} from {args.resume}; pruning is not redone")
    prune_state = {"script": "prune_unstructured", "checkpoint": str(Path(checkpoint).resolve()),
                   "baseline": baseline, "plan": plan.run_name}
    with tensorboard_logger(run_dir) as log:
        job = PruneJob(model, data, plan, targets, finetune_cfg=ft_cfg, run_dir=run_dir, config=config, device=device,
                       loss_fn=loss_fn)
        history = run_pruning(job, final_epochs=cfg.finetune.epochs, seed=cfg.train.seed, log=log,
                              prune_state=prune_state, resume=resume)
    remove_pruning_reparameterization(model)
    final = accuracy_and_cost(model, data, device)
    print_layerwise_sparsity(model)

    metrics = write_results(model, run_dir, checkpoint=checkpoint, cfg=cfg, config=config, plan=plan,
                            targets=targets, baseline=baseline, final=final, history=history, data=data, device=device,
                            lineage=lineage)
    metrics["wall_time_s"] = time.perf_counter() - start
    atomic_write_yaml(run_dir / METRICS, metrics)
    print_summary(metrics, run_dir)


def check_unstructured_resume(resume: dict, model, targets, plan, finetune_cfg, steps_per_epoch: int,
                              source: str) -> None:
    """The resumed last.pth must hold this plan's masks and weights for this model; they are
    installed into `model`. Nothing is written before this passes."""
    if resume[PRUNE_STATE]["plan"] != plan.run_name:
        raise UserError(f"{source} was pruned as {resume[PRUNE_STATE]['plan']}, these settings make "
                        f"{plan.run_name}; resume with the run's own settings or start a new run")
    restore_masks(model, targets, resume, source)
    check_resume(resume, model, finetune_cfg, steps_per_epoch, source)


def write_results(model, run_dir, *, checkpoint, cfg, config, plan, targets, baseline, final, history, data,
                  device, lineage) -> dict:
    """pruned_model.pth (with its lineage), the compressed copy (if asked), layer_weights.png; returns metrics."""
    ucfg = cfg.unstructured
    summary = {"top1": final["top1"], "top5": final["top5"], "baseline_top1": baseline["top1"],
               "actual_sparsity": history[-1]["actual_sparsity"], "method": plan.method, "mode": plan.mode}
    save_checkpoint(run_dir / PRUNED_MODEL, model=model, config=config, metrics=summary, extra={LINEAGE: lineage})
    images = next(iter(data.test))[0][:64].to(device)
    sizes = storage_sizes(model, run_dir, config=config, metrics=summary, fmt=ucfg.compressed_format,
                          save=ucfg.save_compressed, images=images)
    metrics = pruning_metrics(plan=plan, targets=targets, baseline=baseline, final=final, history=history,
                              sizes=sizes, layer_table=layer_sparsity_table(model))
    if plan.method == "nm":
        metrics["semi_structured"] = semi_structured_section(model, plan=plan, targets=targets, device=device,
                                                             profile=cfg.profile, enabled=ucfg.semi_structured)
    metrics |= {"checkpoint": str(checkpoint), "model": cfg.model.name, "data": cfg.data.name,
                "finetune_epochs": cfg.finetune.epochs, "finetune_lr": finetune_train_config(cfg.train, cfg.finetune).lr,
                "seed": cfg.train.seed, "eval_split": "test", "device": str(device),
                "test_set": test_set_record(cfg.data, cfg.train.seed, data.test.num_samples),
                "vs_original": versus(lineage[0], final, "nonzero_"), LINEAGE: lineage}
    plot_layer_weights(model, run_dir / "layer_weights.png")
    return metrics


def print_summary(metrics: dict, run_dir) -> None:
    mib = 2**20
    print(f"sparsity: target {100 * metrics['target_sparsity']:.2f}%  actual {100 * metrics['actual_sparsity']:.2f}% "
          f"of the prunable weights")
    print(f"top1: baseline {metrics['baseline_top1']:.2f}%  right after pruning {metrics['pruned_top1']:.2f}%  "
          f"after fine-tuning {metrics['finetuned_top1']:.2f}%  drop {metrics['accuracy_drop']:+.2f} pts")
    if len(metrics[LINEAGE]) > 1:  # a re-pruned model: the line above is against its parent
        original = metrics["vs_original"]
        print(f"vs the original baseline {original['checkpoint']}: top1 {original['baseline_top1']:.2f}%  "
              f"drop {original['accuracy_drop']:+.2f} pts  non-zero MACs reduction {original['macs_reduction_pct']:.2f}%")
    print(f"MACs: dense {metrics['dense_macs']:,}  non-zero {metrics['nonzero_macs']:,}  theoretical speed-up "
          f"{metrics['theoretical_speedup']:.2f}x on ideal sparse kernels (FLOPs = 2 x MACs: dense "
          f"{metrics['dense_flops']:,}, non-zero {metrics['nonzero_flops']:,})")
    print(f"size: dense checkpoint {metrics['dense_size_bytes'] / mib:.2f} MiB -> compressed "
          f"{metrics['compressed_size_bytes'] / mib:.2f} MiB ({metrics['compression_ratio']:.2f}x smaller, "
          f"{metrics['compressed_format']}, lossless)")
    if "compressed_file" in metrics:
        print(f"compressed checkpoint: {metrics['compressed_file']} (reloaded: outputs identical = "
              f"{metrics['compressed_outputs_identical']})")
    if "semi_structured" in metrics:
        print(format_nm(metrics["semi_structured"]))
    print(f"wrote {run_dir / PRUNED_MODEL}, {run_dir / METRICS}, {run_dir / 'layer_weights.png'}")
    print(f"TensorBoard: uv run tensorboard --logdir {run_dir}")


if __name__ == "__main__":
    run_cli(main)
