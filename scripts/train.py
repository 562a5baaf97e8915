"""Train a model from a YAML config.

    uv run python -m scripts.train --config cfgs/quickstart.yaml
    uv run python -m scripts.train --config cfgs/cifar10_resnet20.yaml --set train.epochs=30
    uv run python -m scripts.train --resume results/train/cifar10_resnet20/last.pth
    uv run python -m scripts.train --resume results/train/cifar10_resnet20/last.pth --epochs 60   # extend
    torchrun --nproc_per_node=4 -m scripts.train --config cfgs/cifar10_resnet18.yaml   # DDP

Writes into the run folder (results/train/<config name>/ unless --save-dir): config.yaml,
log.csv, logs/ (TensorBoard), last.pth, best_model.pth, metrics.yaml and, last, COMPLETE (FAILED
with the error line when it fails). One run at a time may write into a folder: a second one exits 2
naming the first one's PID and command.

--resume continues from the last finished epoch (also after SIGTERM, exit 143); with more epochs
than the run planned, the learning-rate schedule is rebuilt for the new length and continues at
the resumed step (cosine and multistep follow the longer curve; one-cycle's annealing restarts
from there along the longer cycle). A resume that cannot continue (another architecture,
optimizer, scheduler or batch size, fewer epochs than done, or a checkpoint older than the run
folder's last.pth, e.g. its best_model.pth) stops before writing anything. A --save-dir holding a
finished run (COMPLETE) is refused unless --resume continues it.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/train.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import run_cli
from tools.runs.train import train


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--resume", help="last.pth (or its run folder) of a run to continue")
    parser.add_argument("--epochs", type=int, help="overrides train.epochs")
    parser.add_argument("--lr", type=float, help="overrides train.lr")
    parser.add_argument("--batch-size", type=int, help="overrides data.batch_size")
    parser.add_argument("--seed", type=int, help="overrides train.seed")
    parser.add_argument("--model", help="overrides model.name")
    args = parser.parse_args(argv)
    if not args.config and not args.resume:
        parser.error("pass --config cfgs/<name>.yaml (or --resume a run)")
    return args


def main(argv=None):
    train(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
