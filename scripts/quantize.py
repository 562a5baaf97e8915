"""Static INT8 quantization (ONNX Runtime, QDQ, per-channel weights) of an exported model, with
the accuracy of the FP32 and the INT8 file measured by ONNX Runtime on the test split.

    uv run python -m scripts.quantize --checkpoint results/structured/l2_macs0.5/pruned_model.pth
    uv run python -m scripts.quantize --onnx results/train/quickstart/export/model.onnx --calibration entropy
    uv run python -m scripts.eval --checkpoint results/structured/l2_macs0.5/export/model.int8.onnx

--checkpoint exports the model first (<checkpoint folder>/export/model.onnx, or --save-dir) and
takes the data set from the checkpoint's config; --onnx quantizes an existing export and takes
the config from beside it (see scripts.eval), or from --config. Activation ranges are calibrated
on quantize.num_images unaugmented training images (quantize.calibration: minmax | entropy |
percentile). Writes model.int8.onnx beside the FP32 file, quantize.yaml (sizes, both accuracies,
the drop, ops left in FP32, the verdict against quantize.max_drop) and config.yaml (the sidecar
scripts.eval and scripts.profile read). An INT8 file that misses quantize.max_drop is kept, the
verdict says NOT MET and the exit status is 0; with quantize.qat_epochs > 0 (and --checkpoint)
quantization-aware fine-tuning runs first and writes model.qat.onnx / model.qat.int8.onnx.
"""

from __future__ import annotations

# run as a file (python scripts/quantize.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.runs.quantize import quantize


def parse_args(argv):
    parser = base_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a .pth written by train or a pruning script (exported first)")
    source.add_argument("--onnx", help="an FP32 .onnx file written by scripts.export_onnx")
    parser.add_argument("--calibration", help="minmax | entropy | percentile (overrides quantize.calibration)")
    parser.add_argument("--num-images", type=int, help="calibration images (overrides quantize.num_images)")
    parser.add_argument("--max-drop", type=float, help="top-1 points INT8 may lose (overrides quantize.max_drop)")
    return parser.parse_args(argv)


def main(argv=None):
    quantize(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
