"""Wheel files of the pure-Python dependencies (torch-pruning, thop), for a machine without network.

    uv run --with pip python -m scripts.wheels              # here: .whl/ gets the versions uv.lock pins
    python -m pip install --no-index --no-deps .whl/*.whl   # there (torch >= 2.4, torchvision installed)
    python -m scripts.wheels --check                        # there: every dependency, imported; exit 2 if one fails

`.whl/` is ignored by git; copy it with the repo. See README "On a GPU machine without uv or network".
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/wheels.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from tools.core.cli import Parser
from tools.core.errors import run_cli
from tools.core.offline import fetch_wheels


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=".whl", help="folder for the wheel files (default .whl)")
    parser.add_argument("--check", action="store_true", help="only check that this Python has every dependency")
    return parser.parse_args(argv)


def main(argv=None):
    fetch_wheels(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
