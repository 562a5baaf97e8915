"""Evaluate a checkpoint: accuracy, MACs/FLOPs, params, sparsity, size, and optionally latency.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/best_model.pth
    uv run python -m scripts.eval --checkpoint pruned_model.pth --measure-latency \
        --baseline-metrics results/train/quickstart/eval_metrics.yaml
    uv run python -m scripts.eval --checkpoint results/structured/l2_macs0.5/pruned_model.pth \
        --baseline-metrics results/train/quickstart/metrics.yaml --append-csv results/final_comparison.csv

The data set and model come from the config stored in the checkpoint; --config / --set override
it. Writes eval_metrics.yaml next to the checkpoint (or into --save-dir); a folder another run
holds while it runs (a training run's, a pipeline's) is refused with one line.

--baseline-metrics takes any metrics file the project writes (eval_metrics.yaml, a train run's
metrics.yaml, a prune run's metrics.yaml standing for its pruned model) and prints the accuracy
drop, the FLOPs / params reductions and the verdict against structured.goal (judged on dense
FLOPs: a masked model whose dense FLOPs did not fall gets n/a, as in report.md); --append-csv
adds the row Method,Sparsity,FLOPs_Reduction,Accuracy_Drop,Goal_Met to a comparison CSV. The
baseline must have been measured on the same test set (image count, data set, data.test_subset,
recorded as test_set in every metrics file); otherwise eval stops with one line, exit 2.

--grader mobilenet-lab scores the file as the MobileNetV2 lab does (tools.measure.lab_grader; recipe in
cfgs/lab_mobilenetv2.yaml) and writes lab_grade.yaml instead.

An .onnx file (FP32 or INT8, e.g. from scripts.export_onnx or scripts.quantize) is evaluated by
ONNX Runtime on the test split (train.num_threads intra-op threads; --measure-latency times it
with profile.*). Its config comes from --config, else from beside the file: config.yaml in its
folder (scripts.quantize writes one), the checkpoint named in export.yaml there, or the
config.yaml of the run folder holding its export/ folder.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/export/model.int8.onnx
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/eval.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.reports.eval import eval_checkpoint


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a .pth written by train or a pruning script, or an .onnx file (evaluated by ONNX Runtime)",
    )
    parser.add_argument("--measure-latency", action="store_true", help="time inference at profile.batch_sizes")
    parser.add_argument(
        "--batch-sizes", help="comma-separated batch sizes for latency, e.g. 1,64 (overrides profile.batch_sizes)"
    )
    parser.add_argument(
        "--baseline-metrics",
        help="metrics of the baseline (train or prune metrics.yaml, eval_metrics.yaml): adds drop, "
        "reductions, speed-up and the goal verdict",
    )
    parser.add_argument(
        "--append-csv",
        help="with --baseline-metrics: append Method,Sparsity,FLOPs_Reduction,"
        "Accuracy_Drop,Goal_Met to this CSV, e.g. results/final_comparison.csv",
    )
    parser.add_argument(
        "--grader",
        choices=("mobilenet-lab",),
        help="score the file as a course grader does: mobilenet-lab loads it with plain torch.load in a "
        "fresh process, counts it at 224 px with torch-pruning and prints MFLOPs, accuracy, score",
    )
    args = parser.parse_args(argv)
    if args.append_csv and not args.baseline_metrics:
        parser.error("--append-csv needs --baseline-metrics (the drop and reduction are relative to it)")
    return args


def main(argv=None):
    eval_checkpoint(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
