"""scripts.sensitivity: each prunable layer pruned alone at several sparsities (the rest dense), its
top-1 drop on a validation sample, and the per-layer sparsities derived from it.

    uv run python -m scripts.sensitivity --checkpoint results/train/quickstart/best_model.pth --sparsities 0.5,0.9
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tools.core.io import atomic_write_csv, atomic_write_yaml
from tools.core.run_folder import LAYER_SPARSITY, METRICS, RunFolder
from tools.measure.sparsity_plots import plot_sensitivity
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.pruning.sensitivity import (
    check_scan_config,
    derive_layer_sparsity,
    layer_scores,
    sample_eval_subset,
    sensitivity_scan,
    total_sparsity,
)
from tools.pruning.unstructured import accumulate_taylor_scores, prunable_targets


def sensitivity(args, sparsities: list[float] | None) -> None:
    """scripts.sensitivity's whole command: `args` as its parse_args returns them, --sparsities parsed."""
    flags = {
        "sensitivity.sparsities": sparsities,
        "sensitivity.method": args.method,
        "sensitivity.num_images": args.num_images,
        "sensitivity.max_drop": args.max_drop,
        "sensitivity.target_sparsity": args.target_sparsity,
    }
    cfg, _, data, model, device = load_checkpoint_run(args, flags=flags)
    scfg, ucfg = cfg.sensitivity, cfg.unstructured
    sparsities = check_scan_config(
        sparsities=scfg.sparsities,
        method=scfg.method,
        num_images=scfg.num_images,
        max_drop=scfg.max_drop,
        target_sparsity=scfg.target_sparsity,
    )
    loader = sample_eval_subset(data.val, scfg.num_images, seed=cfg.train.seed)
    targets = prunable_targets(
        model,
        keep_first_conv_dense=ucfg.keep_first_conv_dense,
        keep_classifier_dense=ucfg.keep_classifier_dense,
        prune_biases=ucfg.prune_biases,
        prune_bn=ucfg.prune_bn,
    )
    with RunFolder.new(cfg.output.root, "sensitivity", f"{cfg.model.name}_{scfg.method}", args.save_dir).start(
        cfg
    ) as run:
        scan_in(run.path, args, cfg, data, model, device, Scan(loader=loader, targets=targets, sparsities=sparsities))


@dataclass(frozen=True)
class Scan:
    """What the scan covers, decided before the run folder was claimed."""

    loader: object  # the validation sample
    targets: list
    sparsities: list[float]


def scan_in(run_dir, args, cfg, data, model, device, scan: Scan) -> None:
    loader, targets, sparsities = scan.loader, scan.targets, scan.sparsities
    scfg, ucfg = cfg.sensitivity, cfg.unstructured
    print(
        f"run folder: {run_dir}\nscanning {len(targets)} layers x {len(sparsities)} sparsities "
        f"({scfg.method}, {scfg.num_images or 'all'} validation images per point)"
    )

    start = time.perf_counter()
    grads = None
    if scfg.method == "taylor":
        data.train.set_epoch(0)
        grads = accumulate_taylor_scores(model, targets, data.train, num_batches=ucfg.score_batches, device=device)
    scores = layer_scores(targets, scfg.method, grads, cfg.train.seed)
    baseline, rows = sensitivity_scan(
        model, targets, sparsities=sparsities, scores=scores, loader=loader, device=device, progress=print_row
    )
    params = {t.name: t.numel() for t in targets}
    per_layer, rule = derive_layer_sparsity(rows, params, max_drop=scfg.max_drop, target_sparsity=scfg.target_sparsity)

    atomic_write_csv(run_dir / "sensitivity.csv", rows)
    plot_sensitivity(rows, baseline_top1=baseline["top1"], path=run_dir / "sensitivity.png")
    atomic_write_yaml(run_dir / LAYER_SPARSITY, per_layer)
    total = total_sparsity(per_layer, params)
    atomic_write_yaml(
        run_dir / METRICS,
        {
            "checkpoint": str(args.checkpoint),
            "model": cfg.model.name,
            "method": scfg.method,
            "num_images": baseline["num_samples"],
            "baseline_top1": baseline["top1"],
            "sparsities": sparsities,
            "rule": rule,
            "total_sparsity": total,
            "layer_sparsity": per_layer,
            "device": str(device),
            "checkpoint_selected_on": "last",  # the given checkpoint as it is: no epoch is chosen here
            "wall_time_s": time.perf_counter() - start,
        },
    )
    print(f"baseline top1 {baseline['top1']:.2f}% on {baseline['num_samples']} validation images")
    print(f"per-layer sparsities ({rule}): total {100 * total:.2f}% of {sum(params.values()):,} weights")
    for name, value in per_layer.items():
        print(f"  {name:<24} {100 * value:6.2f}%")
    print(f"wrote {run_dir / 'sensitivity.csv'}, {run_dir / 'sensitivity.png'}, {run_dir / LAYER_SPARSITY}")
    print(
        f"next: uv run python -m scripts.prune_unstructured --checkpoint {args.checkpoint} --method l1 "
        f"--sparsity-file {run_dir / LAYER_SPARSITY}"
    )


def print_row(row: dict) -> None:
    print(
        f"{row['layer']:<24} sparsity {100 * row['sparsity']:5.1f}%  top1 {row['top1']:6.2f}%  "
        f"drop {row['drop']:+6.2f} pts",
        flush=True,
    )
