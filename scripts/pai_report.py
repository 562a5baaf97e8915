"""Old name of scripts.at_init_report ("pai": pruning at initialisation), kept so older commands still run."""

# run as a file (python scripts/pai_report.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from scripts.at_init_report import main, run_cli

if __name__ == "__main__":
    run_cli(main)
