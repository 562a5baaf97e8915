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

# run as a file (python scripts/prune_unstructured.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.pruning.unstructured import METHODS, MODES, SCHEDULES
from tools.runs.prune_unstructured import prune_unstructured


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", help="a trained model (.pth written by train)")
    parser.add_argument("--resume", help="<run folder>/last.pth: continue its final fine-tuning (no re-pruning)")
    parser.add_argument("--method", help=f"overrides unstructured.method: {', '.join(METHODS)}")
    parser.add_argument("--mode", help=f"overrides unstructured.mode: {', '.join(MODES)}")
    parser.add_argument("--sparsity", type=float, help="overrides unstructured.sparsity: fraction pruned, in [0, 1)")
    parser.add_argument("--sparsity-file", help="YAML of per-layer sparsities (e.g. from scripts.sensitivity)")
    parser.add_argument(
        "--iterative", action="store_true", default=None, help="prune in steps with fine-tuning between"
    )
    parser.add_argument(
        "--num-iterations", type=int, help="overrides unstructured.num_iterations (implies --iterative)"
    )
    parser.add_argument("--schedule", help=f"overrides unstructured.schedule: {', '.join(SCHEDULES)}")
    parser.add_argument("--nm", help="N:M pattern for --method nm, e.g. 2:4 (overrides unstructured.n/m)")
    parser.add_argument("--epochs", type=int, help="overrides finetune.epochs (after the last step)")
    parser.add_argument("--save-compressed", action="store_true", default=None, help="also write sparse storage")
    return parser.parse_args(argv)


def main(argv=None):
    prune_unstructured(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
