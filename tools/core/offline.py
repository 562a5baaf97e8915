"""Running without uv or network: the wheels to carry, and what this Python lacks.

    uv run --with pip python -m scripts.wheels              # here: torch-pruning, thop wheels into .whl/
    python -m pip install --no-index --no-deps .whl/*.whl   # there, into a Python with torch >= 2.4
    python -m scripts.wheels --check                        # there: one line per dependency

    versions = locked_versions(Path("uv.lock"), WHEELS)     # {"torch-pruning": "1.6.1", "thop": "..."}
    problems = [row for row in check_modules() if not row.ok]

Only torch-pruning and thop are carried as wheels: both are pure Python (one wheel fits every
platform and Python), while a machine with PyTorch preinstalled (a cluster image, a container)
usually has the others already; `--check` names any that are missing. Every script runs as
`python -m scripts.NAME` from the repo root, and the benchmark runner starts its scripts with
the same Python (`sys.executable`), so nothing needs uv at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.core.errors import UserError, first_line

WHEELS = ("torch-pruning", "thop")  # pure-Python dependencies carried as wheel files
MIN_TORCH = (2, 4)
# import name -> (distribution name, what needs it)
MODULES = {
    "torch": ("torch", "everything (>= 2.4)"),
    "torchvision": ("torchvision", "models and data sets"),
    "torch_pruning": ("torch-pruning", "structured pruning, MACs counting"),
    "yaml": ("pyyaml", "configs"),
    "numpy": ("numpy", "data sets"),
    "PIL": ("pillow", "image decoding"),
    "tqdm": ("tqdm", "progress bars"),
    "torch.utils.tensorboard": ("tensorboard", "training logs"),
    "onnx": ("onnx", "scripts.export_onnx"),
    "onnxruntime": ("onnxruntime", "export --verify, profile --backend onnx"),
    "matplotlib": ("matplotlib", "plots of scripts.report and the pruning scripts"),
    "thop": ("thop", "tests (MACs cross-check)"),
    "pytest": ("pytest", "tests"),
}


@dataclass
class ModuleCheck:
    module: str
    distribution: str
    needed_by: str
    ok: bool
    detail: str  # version, or why the import failed


def locked_versions(lock: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The versions of `names` pinned in uv.lock (its [[package]] name/version pairs)."""
    if not lock.is_file():
        raise UserError(f"{lock} not found; run from the repo root (it holds uv.lock)")
    pinned = dict(re.findall(r'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', lock.read_text(), re.M))
    missing = [n for n in names if n not in pinned]
    if missing:
        raise UserError(f"{lock} pins no {', '.join(missing)}; run `uv lock` first")
    return {n: pinned[n] for n in names}


def download_command(versions: dict[str, str], dest: Path) -> list[str]:
    """pip's command for the wheels (no dependencies: the target has torch; both are pure Python)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        *(f"{name}=={version}" for name, version in versions.items()),
    ]


def torch_version_ok(version: str) -> bool:
    major_minor = re.match(r"(\d+)\.(\d+)", version)
    return bool(major_minor) and tuple(map(int, major_minor.groups())) >= MIN_TORCH


def check_modules(modules: dict[str, tuple[str, str]] | None = None) -> list[ModuleCheck]:
    """Import each module (a find_spec is not enough: thop imports distutils, gone in Python 3.12
    unless setuptools provides it)."""
    rows = []
    for module, (dist, needed_by) in (modules or MODULES).items():
        try:
            imported = importlib.import_module(module)
        except Exception as err:  # ImportError, or anything a broken package raises on import
            rows.append(
                ModuleCheck(module, dist, needed_by, False, f"{type(err).__name__}: {first_line(err, empty='')}")
            )
            continue
        version = str(getattr(imported, "__version__", "") or "")
        ok = module != "torch" or torch_version_ok(version)
        rows.append(ModuleCheck(module, dist, needed_by, ok, version or "installed"))
    return rows


def fetch_wheels(args) -> None:
    """scripts.wheels's whole command: `args` as its parse_args returns them."""
    if args.check:
        return check_python()
    if importlib.util.find_spec("pip") is None:
        raise UserError(
            "this Python has no pip (uv's .venv has none): run `uv run --with pip python -m scripts.wheels`"
        )
    command = download_command(locked_versions(Path("uv.lock"), WHEELS), Path(args.dest))
    print("$ " + " ".join(command[1:]), flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(
            f"pip could not download {', '.join(WHEELS)}; see its message above (a package index is needed here)"
        )
    wheels = sorted(Path(args.dest).glob("*.whl"))
    print("\n".join(f"{w} ({w.stat().st_size / 1024:.0f} KiB)" for w in wheels))
    print(f"on the target: python -m pip install --no-index --no-deps {args.dest}/*.whl")


def check_python() -> None:
    """Print each dependency's state; UserError naming those this Python lacks."""
    rows = check_modules()
    for r in rows:
        print(f"{'ok' if r.ok else 'MISSING':8s} {r.distribution:14s} {r.detail:40.40s} needed by {r.needed_by}")
    bad = [r.distribution for r in rows if not r.ok]
    if bad:
        raise UserError(
            f"this Python lacks {', '.join(bad)} (or has torch < 2.4); torch-pruning and thop install from "
            f"wheels made by scripts.wheels: python -m pip install --no-index --no-deps .whl/*.whl"
        )
    print("every dependency imports; run scripts as python -m scripts.NAME from the repo root")
