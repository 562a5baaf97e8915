"""Old name of scripts.at_init_report ("pai": pruning at initialisation), kept so older commands still run."""
from scripts.at_init_report import main, run_cli

if __name__ == "__main__":
    run_cli(main)
