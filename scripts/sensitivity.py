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

# run as a file (python scripts/sensitivity.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser, parse_list
from tools.core.errors import run_cli
from tools.pruning.sensitivity import check_sparsities
from tools.runs.sensitivity import sensitivity


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="a trained model (.pth written by train)")
    parser.add_argument(
        "--sparsities", help="comma-separated sparsities to scan, e.g. 0.1,0.5,0.9 (overrides sensitivity.sparsities)"
    )
    parser.add_argument("--method", help="overrides sensitivity.method: l1, random or taylor")
    parser.add_argument("--num-images", type=int, help="overrides sensitivity.num_images (0 = whole validation split)")
    parser.add_argument("--max-drop", type=float, help="overrides sensitivity.max_drop (top-1 points per layer)")
    parser.add_argument("--target-sparsity", type=float, help="overrides sensitivity.target_sparsity (total)")
    return parser.parse_args(argv)


def parse_sparsities(text: str | None) -> list[float] | None:
    values = parse_list(text, float, "--sparsities", "0.1,0.5,0.9")
    return None if values is None else check_sparsities(values)


def main(argv=None):
    sensitivity(args := parse_args(argv), parse_sparsities(args.sparsities))


if __name__ == "__main__":
    run_cli(main)
