"""Export a checkpoint to ONNX and/or TorchScript, optionally verified against PyTorch.

    uv run python -m scripts.export_onnx --checkpoint results/train/quickstart/best_model.pth --verify
    uv run python -m scripts.export_onnx --checkpoint pruned_model.pth --format onnx --opset 13

Writes model.onnx / model.torchscript.pt and export.yaml (file sizes, opset, max abs differences)
into <checkpoint folder>/export/ unless --save-dir, then COMPLETE (FAILED with the error line when
the export or its verification fails; a bad format or opset fails before any folder is made), and
the ONNX file also beside the checkpoint as <checkpoint name>.onnx
(results/structured/l2_macs0.5/pruned_model.onnx: what `ls results/structured/*/*.onnx` lists; not
when --verify fails). --verify runs ONNX Runtime and TorchScript on random and real test inputs at
export.verify_batch_sizes, prints the largest absolute difference and the largest relative one
(max |diff| / largest |logit| of that input), and exits 1 when any max |diff| exceeds
export.tolerance + export.rtol x the largest |logit| of its input (defaults 1e-5 and 1e-4, the
torch.allclose form on the logits' scale: a correct export of a model with large logits passes,
a wrong export is off by far more).
"""

from __future__ import annotations

# run as a file (python scripts/export_onnx.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.modeling.export import FORMATS
from tools.runs.export_onnx import export_checkpoint


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="a .pth written by train or a pruning script")
    parser.add_argument("--format", choices=FORMATS, help="overrides export.format")
    parser.add_argument("--opset", type=int, help="overrides export.opset")
    parser.add_argument("--tolerance", type=float, help="overrides export.tolerance (the absolute part)")
    parser.add_argument("--rtol", type=float, help="overrides export.rtol (the part relative to the logits' scale)")
    parser.add_argument("--verify", action="store_true", help="compare ONNX Runtime / TorchScript outputs with PyTorch")
    return parser.parse_args(argv)


def main(argv=None):
    export_checkpoint(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
