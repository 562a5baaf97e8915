"""Pruning at initialization (SNIP, GraSP, SynFlow vs random and magnitude), the Synaptic-Flow protocol.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --pruner-list rand,mag,snip,grasp,synflow --compression-list 0.5,1
    uv run python -m scripts.prune_at_init --config cfgs/at_init_cifar10jpeg_resnet20.yaml --expid resnet20_grid --pruner-list rand,mag,snip,grasp,synflow --compression-list 0.2,0.5,1
    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --experiment multishot --pruner mag --compression-list 1 --level-list 1,2 --pre-epochs 1
    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --pruner synflow --save-trace --amp

The Synaptic-Flow assignment's own flags work as written: --model-class, --model, --dataset,
--pruner, --compression, --post-epoch, --experiment, --expid, --mask-scope, --compression-schedule,
and --quantization (mixed-precision training, like --amp), e.g.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_cifar10jpeg_resnet20.yaml --model-class lottery \
        --model resnet20 --dataset imagefolder --experiment singleshot --pruner synflow --compression 1 \
        --post-epoch 2 --expid synflow_c1

Compression c keeps density 10^-c of the prunable weights (c = 1 keeps 10%, sparsity 90%); every
output names both numbers, as the original code calls the density "sparsity".

singleshot: optional pre-training (`--pre-epochs`; magnitude needs a trained net), prune every
pruner to every compression from the same start, train `--post-epochs` with the masks held.
multishot: for each compression and level count L, L rounds of train / prune / rewind to the
initial weights (masks kept), then post-training.

Writes results/prune_at_init/<expid>/ (or --save-dir): config.yaml, start_model.pth, results.csv
and results.yaml (one row per run: density and sparsity, test top-1/top-5, test-set inference
time, dense and non-zero FLOPs and MACs, collapsed layers, training wall time and peak memory,
per-layer densities), accuracy/inference_time/flops_vs_compression.png, report.md, and per run
<pruner>_c<compression>[_L<levels>]/ with log.csv, TensorBoard logs, checkpoints,
layer_density.csv, pruned_model.pth and with --save-trace trace.json (Chrome trace).
Tables and weight histograms: `uv run python -m scripts.at_init_report <run folder> --histogram synflow:1`.
"""

from __future__ import annotations

# run as a file (python scripts/prune_at_init.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser, parse_list
from tools.core.errors import run_cli
from tools.pruning.at_init import PRUNERS, SCHEDULES, SCOPES
from tools.reports.prune_at_init import prune_at_init
from tools.runs.prune_at_init import EXPERIMENTS


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--experiment", choices=EXPERIMENTS, help="overrides pai.experiment")
    parser.add_argument("--expid", help="run folder name under results/prune_at_init/ (overrides output.name)")
    parser.add_argument("--pruner", help=f"one pruner: {', '.join(PRUNERS)}")
    parser.add_argument("--pruner-list", help="comma-separated pruners, run as a grid")
    parser.add_argument("--compression", type=float, help="one compression c: density 10^-c kept")
    parser.add_argument("--compression-list", help="comma-separated compressions, e.g. 0.2,0.5,1")
    parser.add_argument("--level-list", help="multishot: comma-separated prune-train-rewind level counts")
    parser.add_argument("--pre-epochs", type=int, help="overrides pai.pre_epochs")
    parser.add_argument("--post-epochs", "--post-epoch", type=int, help="overrides pai.post_epochs")
    parser.add_argument("--prune-epochs", type=int, help="overrides pai.prune_epochs (synflow iterations)")
    parser.add_argument("--scope", "--mask-scope", choices=SCOPES, help="overrides pai.scope")
    parser.add_argument("--schedule", "--compression-schedule", choices=SCHEDULES, help="overrides pai.schedule")
    parser.add_argument("--model", help="overrides model.name")
    parser.add_argument(
        "--model-class",
        choices=MODEL_CLASSES,
        help="the assignment's model family: lottery / default (CIFAR-style stems, the registry's "
        "resnet20, vgg16, fc, ...) or imagenet (ImageNet stems); sets model.stem",
    )
    parser.add_argument(
        "--dataset", help="overrides data.name (cifar10, cifar100, mnist, fashionmnist, synthetic, imagefolder)"
    )
    parser.add_argument(
        "--save-trace", action="store_true", default=None, help="Chrome trace of one inference step per run"
    )
    parser.add_argument(
        "--amp",
        "--quantization",
        nargs="?",
        const="bf16",
        choices=("bf16", "fp16"),
        help="mixed-precision training (train.amp; bf16 when given alone; CUDA only; the assignment's "
        "--quantization); scripts.at_init_report tabulates an AMP run against an FP32 one",
    )
    return parser.parse_args(argv)


# Synaptic-Flow's --model-class families -> model.stem (its lottery / default models: the "auto" CIFAR stem)
MODEL_CLASSES = {"default": "auto", "lite": "auto", "lottery": "auto", "tinyimagenet": "auto", "imagenet": "imagenet"}


def cli_flags(args) -> dict:
    pruners = parse_list(args.pruner_list, str, "--pruner-list", "rand,synflow") or (
        [args.pruner] if args.pruner else None
    )
    compressions = parse_list(args.compression_list, float, "--compression-list", "0.2,0.5,1") or (
        [args.compression] if args.compression is not None else None
    )
    return {
        "pai.experiment": args.experiment,
        "pai.pruners": pruners,
        "pai.compressions": compressions,
        "pai.levels": parse_list(args.level_list, int, "--level-list", "1,2,3"),
        "pai.pre_epochs": args.pre_epochs,
        "pai.post_epochs": args.post_epochs,
        "pai.prune_epochs": args.prune_epochs,
        "pai.scope": args.scope,
        "pai.schedule": args.schedule,
        "pai.save_trace": args.save_trace,
        "train.amp": args.amp,
        "model.name": args.model,
        "model.stem": MODEL_CLASSES.get(args.model_class),
        "data.name": args.dataset,
        "output.name": args.expid,
    }


def main(argv=None):
    prune_at_init(args := parse_args(argv), cli_flags(args))


if __name__ == "__main__":
    run_cli(main)
