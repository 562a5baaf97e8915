"""Wheel files of the pure-Python dependencies (torch-pruning, thop), for a machine without network.

    uv run --with pip python -m scripts.wheels              # here: .whl/ gets the versions uv.lock pins
    python -m pip install --no-index --no-deps .whl/*.whl   # there (torch >= 2.4, torchvision installed)
    python -m scripts.wheels --check                        # there: every dependency, imported; exit 2 if one fails

`.whl/` is ignored by git; copy it with the repo. See README "On a GPU machine without uv or network".
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/wheels.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import importlib.util
import subprocess
from pathlib import Path

from tools.core.cli import Parser
from tools.core.errors import UserError, run_cli
from tools.core.offline import WHEELS, check_modules, download_command, locked_versions


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=".whl", help="folder for the wheel files (default .whl)")
    parser.add_argument("--check", action="store_true", help="only check that this Python has every dependency")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if importlib.util.find_spec("pip") is None:
        raise UserError("this Python has no pip (uv's .venv has none): run `uv run --with pip python -m scripts.wheels`")
    command = download_command(locked_versions(Path("uv.lock"), WHEELS), Path(args.dest))
    print("$ " + " ".join(command[1:]), flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"pip could not download {', '.join(WHEELS)}; see its message above (a package index is needed here)")
    wheels = sorted(Path(args.dest).glob("*.whl"))
    print("\n".join(f"{w} ({w.stat().st_size / 1024:.0f} KiB)" for w in wheels))
    print(f"on the target: python -m pip install --no-index --no-deps {args.dest}/*.whl")


def check():
    rows = check_modules()
    for r in rows:
        print(f"{'ok' if r.ok else 'MISSING':8s} {r.distribution:14s} {r.detail:40.40s} needed by {r.needed_by}")
    bad = [r.distribution for r in rows if not r.ok]
    if bad:
        raise UserError(f"this Python lacks {', '.join(bad)} (or has torch < 2.4); torch-pruning and thop install from "
                        f"wheels made by scripts.wheels: python -m pip install --no-index --no-deps .whl/*.whl")
    print("every dependency imports; run scripts as python -m scripts.NAME from the repo root")


if __name__ == "__main__":
    run_cli(main)
