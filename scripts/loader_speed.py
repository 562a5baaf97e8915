"""Is the data loader or the model the bottleneck? Loader-only images/s vs training-step images/s.

    uv run python -m scripts.loader_speed --config cfgs/cifar10jpeg_resnet20.yaml --batches 20

Uses the training loader of the config (with its augmentation) and the config's model; prints
both rates and their ratio (and writes them to --save-results, a YAML file, when given). A ratio
well above 1 means the loader keeps the model fed.
"""

from __future__ import annotations

# run as a file (python scripts/loader_speed.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import base_parser
from tools.core.errors import UserError, run_cli
from tools.runs.loader_speed import loader_speed


def parse_args(argv):
    parser = base_parser(__doc__, config_required=True)
    parser.add_argument("--batches", type=int, default=20, help="timed batches for each measurement")
    parser.add_argument("--save-results", help="YAML file for the two rates")
    args = parser.parse_args(argv)
    if args.batches < 1:
        raise UserError(f"--batches must be >= 1, got {args.batches}")
    return args


def main(argv=None):
    loader_speed(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
