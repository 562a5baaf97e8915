"""Profile a baseline and pruned models: MACs/FLOPs/params/size, latency, and whether fewer FLOPs
really made the model faster.

    uv run python -m scripts.profile --baseline results/train/quickstart/best_model.pth \
        --pruned results/structured/l2_macs0.5/pruned_model.pth --measure-latency --batch-sizes 1,64 --backend both

An .onnx file (FP32 or INT8, e.g. from scripts.quantize) may stand for any checkpoint: it is timed
on ONNX Runtime only, beside the others in the same rounds, with its config from beside the file
(see scripts.eval) and its MACs from the quantize.yaml there:

    uv run python -m scripts.profile --baseline export/model.onnx --pruned export/model.int8.onnx \
        --measure-latency --batch-sizes 1,64 --backend onnxruntime --set profile.num_threads=1 profile.rounds=5

Run it as a module (python -m scripts.profile): as a file it would shadow Python's own `profile`.
On a machine other jobs share, `--set profile.rounds=5` times the models in turns (interleaved).
Writes profile.yaml and latency_vs_macs.png into the run folder: --save-dir, or by default
results/profile/<baseline run>/ (_2, _3, ... when taken); --save-results FILE names the YAML
itself. An existing profile is never overwritten: a --save-dir or --save-results that already
holds one is refused before any work.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/profile.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.runs.profile import profile


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--baseline", required=True, help="checkpoint of the unpruned model")
    parser.add_argument("--pruned", nargs="+", action="extend", default=[], help="checkpoints of pruned models")
    parser.add_argument("--measure-latency", action="store_true", help="time inference (else cost figures only)")
    parser.add_argument("--batch-sizes", help="comma-separated, e.g. 1,32,256 (overrides profile.batch_sizes)")
    parser.add_argument("--backend", default="torch", help="torch | onnxruntime | both (default torch)")
    parser.add_argument("--save-results", help="YAML file for the results (instead of <run folder>/profile.yaml)")
    parser.add_argument("--top-layers", type=int, default=8, help="slowest layers to list per model")
    args = parser.parse_args(argv)
    if args.save_results and args.save_dir:
        parser.error("pass --save-dir (a run folder) or --save-results (a file), not both")
    return args


def main(argv=None):
    profile(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
