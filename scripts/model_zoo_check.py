"""Check every torchvision classifier through structured pruning and write docs/models.md.

    uv run python -m scripts.model_zoo_check                           # all models, 32 and 224 px
    uv run python -m scripts.model_zoo_check --models squeezenet1_1,regnet_x_400mf --sizes 32
    uv run python -m scripts.model_zoo_check --doc-only                # rebuild the doc from the records

Rows already in the records file (docs/models.yaml) are skipped unless --force; see
tools.workflows.model_zoo for what one row checks.
"""

from __future__ import annotations

# run as a file (python scripts/model_zoo_check.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import argparse

from tools.core.errors import run_cli
from tools.workflows.model_zoo import model_zoo_check


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated torchvision names (default: all classifiers)")
    parser.add_argument("--sizes", default="32,224", help="input sizes in px, e.g. 32,224")
    parser.add_argument("--records", default="docs/models.yaml", help="finished rows (read and extended)")
    parser.add_argument("--doc", default="docs/models.md", help="the generated table")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per row (one thread)")
    parser.add_argument("--max-params", type=float, default=300e6, help="rows of larger models are not run")
    parser.add_argument("--force", action="store_true", help="re-run rows already in the records")
    parser.add_argument("--doc-only", action="store_true", help="only rebuild the doc from the records")
    return parser.parse_args(argv)


def main(argv=None):
    model_zoo_check(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
