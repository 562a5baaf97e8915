"""Imported first by a script run as a file (`python scripts/train.py --help`, the seeds' form): the
repo root goes first on sys.path and scripts/ comes off it, since its profile.py would shadow the
standard-library module torch imports. `python -m scripts.<name>` never imports it.

    python scripts/train.py --help
"""

import os
import sys

_SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_SCRIPTS_DIR)] + [p for p in sys.path if os.path.abspath(p or ".") != _SCRIPTS_DIR]

import tools.workflows.config  # noqa: E402,F401  (composes the config's sections, as scripts/__init__.py does)
