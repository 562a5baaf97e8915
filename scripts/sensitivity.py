"""Sensitivity scan: prune each layer alone at several sparsities, measure accuracy, derive per-layer sparsities.

    uv run python -m scripts.sensitivity --checkpoint results/train/quickstart/best_model.pth
    uv run python -m scripts.sensitivity --checkpoint best_model.pth --target-sparsity 0.8 --sparsities 0.3,0.5,0.7,0.8,0.9,0.95
    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method l1 --sparsity-file results/sensitivity/resnet20_l1/layer_sparsity.yaml

Accuracy is measured on a seeded random sample of sensitivity.num_images validation images. The derived dict
either keeps every layer, pruned alone, within sensitivity.max_drop top-1 points, or (with
--target-sparsity) meets that total sparsity at an equal per-layer drop; see tools.pruning.sensitivity.
Which layers are scanned follows the unstructured.keep_* / prune_* keys.

Writes results/sensitivity/<model>_<method>/ (or --save-dir): sensitivity.csv (one row per layer
and sparsity), sensitivity.png (one curve per layer), layer_sparsity.yaml (the dict
prune_unstructured --sparsity-file accepts), metrics.yaml and config.yaml.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/sensitivity.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import time

from tools.core.cli import base_parser, parse_list
from tools.core.errors import run_cli
from tools.core.io import atomic_write_csv, atomic_write_yaml
from tools.core.run_folder import LAYER_SPARSITY, METRICS, RunFolder
from tools.pruning.sensitivity import (
    check_scan_config,
    check_sparsities,
    derive_layer_sparsity,
    layer_scores,
    sample_eval_subset,
    sensitivity_scan,
    total_sparsity,
)
from tools.pruning.unstructured import accumulate_taylor_scores, prunable_targets
from tools.reports.sparsity_plots import plot_sensitivity
from tools.modeling.checkpoint_run import load_checkpoint_run


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="a trained model (.pth written by train)")
    parser.add_argument("--sparsities", help="comma-separated sparsities to scan, e.g. 0.1,0.5,0.9 (overrides sensitivity.sparsities)")
    parser.add_argument("--method", help="overrides sensitivity.method: l1, random or taylor")
    parser.add_argument("--num-images", type=int, help="overrides sensitivity.num_images (0 = whole validation split)")
    parser.add_argument("--max-drop", type=float, help="overrides sensitivity.max_drop (top-1 points per layer)")
    parser.add_argument("--target-sparsity", type=float, help="overrides sensitivity.target_sparsity (total)")
    return parser.parse_args(argv)


def parse_sparsities(text: str | None) -> list[float] | None:
    values = parse_list(text, float, "--sparsities", "0.1,0.5,0.9")
    return None if values is None else check_sparsities(values)


def main(argv=None):
    args = parse_args(argv)
    flags = {"sensitivity.sparsities": parse_sparsities(args.sparsities), "sensitivity.method": args.method,
             "sensitivity.num_images": args.num_images, "sensitivity.max_drop": args.max_drop,
             "sensitivity.target_sparsity": args.target_sparsity}
    cfg, _, data, model, device = load_checkpoint_run(args, flags=flags)
    scfg, ucfg = cfg.sensitivity, cfg.unstructured
    sparsities = check_scan_config(sparsities=scfg.sparsities, method=scfg.method, num_images=scfg.num_images,
                                   max_drop=scfg.max_drop, target_sparsity=scfg.target_sparsity)
    loader = sample_eval_subset(data.val, scfg.num_images, seed=cfg.train.seed)
    targets = prunable_targets(model, keep_first_conv_dense=ucfg.keep_first_conv_dense,
                               keep_classifier_dense=ucfg.keep_classifier_dense, prune_biases=ucfg.prune_biases,
                               prune_bn=ucfg.prune_bn)
    with RunFolder.new(cfg.output.root, "sensitivity", f"{cfg.model.name}_{scfg.method}", args.save_dir).start(cfg) as run:
        scan_in(run.path, args, cfg, data, model, device, loader=loader, targets=targets, sparsities=sparsities)


def scan_in(run_dir, args, cfg, data, model, device, *, loader, targets, sparsities) -> None:
    scfg, ucfg = cfg.sensitivity, cfg.unstructured
    print(f"run folder: {run_dir}\nscanning {len(targets)} layers x {len(sparsities)} sparsities "
          f"({scfg.method}, {scfg.num_images or 'all'} validation images per point)")

    start = time.perf_counter()
    grads = None
    if scfg.method == "taylor":
        data.train.set_epoch(0)
        grads = accumulate_taylor_scores(model, targets, data.train, num_batches=ucfg.score_batches, device=device)
    scores = layer_scores(targets, scfg.method, grads, cfg.train.seed)
    baseline, rows = sensitivity_scan(model, targets, sparsities=sparsities, scores=scores, loader=loader, device=device,
                                      progress=print_row)
    params = {t.name: t.numel() for t in targets}
    per_layer, rule = derive_layer_sparsity(rows, params, max_drop=scfg.max_drop, target_sparsity=scfg.target_sparsity)

    atomic_write_csv(run_dir / "sensitivity.csv", rows)
    plot_sensitivity(rows, baseline_top1=baseline["top1"], path=run_dir / "sensitivity.png")
    atomic_write_yaml(run_dir / LAYER_SPARSITY, per_layer)
    total = total_sparsity(per_layer, params)
    atomic_write_yaml(run_dir / METRICS, {
        "checkpoint": str(args.checkpoint), "model": cfg.model.name, "method": scfg.method,
        "num_images": baseline["num_samples"], "baseline_top1": baseline["top1"], "sparsities": sparsities,
        "rule": rule, "total_sparsity": total, "layer_sparsity": per_layer, "device": str(device),
        "wall_time_s": time.perf_counter() - start})
    print(f"baseline top1 {baseline['top1']:.2f}% on {baseline['num_samples']} validation images")
    print(f"per-layer sparsities ({rule}): total {100 * total:.2f}% of {sum(params.values()):,} weights")
    for name, value in per_layer.items():
        print(f"  {name:<24} {100 * value:6.2f}%")
    print(f"wrote {run_dir / 'sensitivity.csv'}, {run_dir / 'sensitivity.png'}, {run_dir / LAYER_SPARSITY}")
    print(f"next: uv run python -m scripts.prune_unstructured --checkpoint {args.checkpoint} --method l1 "
          f"--sparsity-file {run_dir / LAYER_SPARSITY}")


def print_row(row: dict) -> None:
    print(f"{row['layer']:<24} sparsity {100 * row['sparsity']:5.1f}%  top1 {row['top1']:6.2f}%  "
          f"drop {row['drop']:+6.2f} pts", flush=True)


if __name__ == "__main__":
    run_cli(main)
