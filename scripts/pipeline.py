"""The whole bootcamp in one command: train -> eval -> unstructured prune + fine-tune ->
structured prune to the goal + fine-tune -> export (verified) -> INT8 quantization (ONNX Runtime)
of the structured and the dense model -> profile -> [structured prune to a measured FP32 ONNX
Runtime latency target, `pipeline.latency_target_reduction`] -> [structured prune to a measured
INT8 latency target, `pipeline.int8_latency_target_reduction` (backend onnxruntime-int8; it
writes structured_int8/model.int8.onnx)] -> report (its deployment section: the file to ship per
target, with its speed-ups over the dense FP32 and dense INT8 files).

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

# run as a file (python scripts/pipeline.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.workflows.pipeline import pipeline


def parse_args(argv):
    parser = base_parser(__doc__, config_required=True)
    parser.add_argument("--force", action="store_true", help="redo every step, discarding earlier outputs")
    return parser.parse_args(argv)


def main(argv=None):
    pipeline(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
