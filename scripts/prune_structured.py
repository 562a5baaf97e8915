"""Structured pruning: remove whole channels (dependency-aware), fine-tune, and check the goal.

    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet20/best_model.pth \
        --method bn_scale --sparsity 0.5
    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet20/best_model.pth \
        --method l1 --pruning-ratio 0.3
    uv run python -m scripts.prune_structured --checkpoint results/train/cifar10_resnet18/best_model.pth \
        --config cfgs/structured_resnet18_goal.yaml --method taylor --target-macs-reduction 0.5
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --target-latency-reduction 0.5 \
        --set structured.latency.backend=onnxruntime structured.latency.batch_size=64
    uv run python -m scripts.prune_structured --checkpoint best_model.pth --target-latency-reduction 0.6 \
        --set structured.latency.backend=onnxruntime-int8 quantize.qat_epochs=1
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
with the error line, e.g. for a MACs target it cannot reach). With the onnxruntime-int8 latency
backend every timed model is quantized to INT8 first, and the run also writes model.int8.onnx (after
quantize.qat_epochs of QAT when > 0) with its top-1 and its speed-ups over the dense FP32 and dense
INT8 files. Re-pruning a pruned model reports
against the original baseline as well as the parent, and judges the goal against the original
(the lineage travels in the pruned model).
"""

from __future__ import annotations

# run as a file (python scripts/prune_structured.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.pruning.structured import GRANULARITIES, STRUCTURED_METHODS
from tools.runs.prune_structured import prune_structured


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", help="best_model.pth of a trained model (or any .pth eval loads)")
    parser.add_argument("--resume", help="<run folder>/last.pth: continue its final fine-tuning (no re-pruning)")
    parser.add_argument("--method", help=f"{' | '.join(STRUCTURED_METHODS)} (structured.method)")
    parser.add_argument("--granularity", help=f"{' | '.join(GRANULARITIES)} (structured.granularity)")
    target = parser.add_mutually_exclusive_group()
    # --sparsity is the bootcamp's flag: "sparsity 0.5" there means half the FLOPs gone, so it
    # sets the MACs target (FLOPs = 2 x MACs: the same fraction), not the channel ratio.
    target.add_argument(
        "--target-macs-reduction",
        type=float,
        help="fraction of FLOPs (= MACs) to remove, e.g. 0.5, reached within structured.target_tolerance "
        "(structured.target_macs_reduction); run folder <method>_macs<target>",
    )
    target.add_argument(
        "--sparsity",
        type=float,
        help="the bootcamp's name of --target-macs-reduction; run folder <method>_sp<target>, as the bootcamp names it",
    )
    target.add_argument(
        "--pruning-ratio",
        type=float,
        help="fraction of channels to remove instead, e.g. 0.3 (structured.pruning_ratio)",
    )
    target.add_argument(
        "--target-latency-reduction",
        type=float,
        help="fraction of measured latency to remove on structured.latency.backend, e.g. 0.5",
    )
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (finetune.epochs)")
    parser.add_argument("--iterative-steps", type=int, help="prune-finetune rounds (structured.iterative_steps)")
    return parser.parse_args(argv)


def main(argv=None):
    prune_structured(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
