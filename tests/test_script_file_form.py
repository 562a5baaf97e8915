"""The seeds' command form `python scripts/<name>.py ...` works like `python -m scripts.<name>`:
run as a file, scripts/ is sys.path[0] and its profile.py would shadow the stdlib module torch
imports (an ImportError traceback before); each script puts the repo root there instead. And
`--sparsity` names the structured run folder as the bootcamp does (bn_scale_sp0.5)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "scripts").glob("*.py") if not p.stem.startswith("_")
)  # _file_form: the guard's helper


def run_file(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # only what the file form itself gives
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--help"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("script", ["train", "eval", "profile"])
def test_file_form_prints_usage_from_the_repo_root(script):
    done = run_file(script, ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {script}.py") and "Traceback" not in done.stderr


def test_every_script_carries_the_file_form_guard():
    """Each script fixes sys.path before its first import (the --help runs above prove the guard works)."""
    missing = [
        name
        for name in SCRIPTS
        if 'if __name__ == "__main__" and not __package__:' not in (ROOT / "scripts" / f"{name}.py").read_text()
    ]
    assert missing == []


def test_sparsity_names_the_folder_like_the_seed():
    import scripts.prune_structured as prune_script
    from tools.core.config import Config
    from tools.runs.prune_structured import cli_flags, structured_name

    def name_for(argv):
        args = prune_script.parse_args(["--method", "bn_scale", *argv])
        cfg = Config()
        for key, value in cli_flags(args).items():
            section, _, name = key.partition(".")
            if section == "structured" and value is not None:
                setattr(cfg.structured, name, value)
        return structured_name(cfg.structured, seed_form=args.sparsity is not None)

    assert name_for(["--sparsity", "0.5"]) == "bn_scale_sp0.5"  # the seed's folder
    assert name_for(["--target-macs-reduction", "0.5"]) == "bn_scale_macs0.5"  # as before
    assert name_for(["--pruning-ratio", "0.3"]) == "bn_scale_sp0.3"  # as before
