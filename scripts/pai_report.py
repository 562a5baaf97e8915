"""Old name of scripts.at_init_report ("pai": pruning at initialisation), kept so older commands still run."""

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/pai_report.py), not as -m scripts.pai_report:
    import os  # import from the repo root, never from scripts/ (its profile.py shadows the stdlib module torch imports)
    import sys

    _scripts_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_scripts_dir)] + [p for p in sys.path if os.path.abspath(p or ".") != _scripts_dir]

from scripts.at_init_report import main, run_cli

if __name__ == "__main__":
    run_cli(main)
