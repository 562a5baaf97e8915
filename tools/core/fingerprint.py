"""What a result was computed from, so a re-run can tell a current result from a stale one.

    from tools.core.fingerprint import fingerprint, stale_reason
    fp = fingerprint(config={"train": {"epochs": 4}}, argv=["train", "--save-dir", "x"], inputs=[])
    stale_reason(fp, fp)                  # None: nothing changed
    stale_reason(None, fp)                # 'no fingerprint recorded'

A fingerprint holds the project version, a digest of the resolved config, a digest of the command
line and the sha256 of every input file (checkpoints, sparsity files). Pipeline steps, sweep points
and benchmark rows record it beside their result and run again when it changes.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable

PROJECT = "pruning-bootcamp"


@lru_cache(maxsize=1)
def project_version() -> str:
    try:
        from importlib.metadata import version

        return version(PROJECT)
    except Exception:  # not installed (e.g. run from a plain checkout): the pyproject says it
        import re

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # tools/core/ -> repo root
        try:
            found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        except OSError:
            found = None
        return found.group(1) if found else "unknown"


def digest(obj) -> str:
    """A short, stable hash of any YAML-like object (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file's content (None when it does not exist); cached per (path, size, mtime)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(*, config: dict | None = None, argv: Iterable[str] = (), inputs: Iterable[str | Path] = ()) -> dict:
    return {
        "version": project_version(),
        "config": digest(config),
        "argv": digest(list(argv)),
        "inputs": {str(p): file_sha256(p) for p in inputs},
    }


def stale_reason(recorded: dict | None, current: dict) -> str | None:
    """None when `recorded` equals `current`, else what changed, in a few words."""
    if not isinstance(recorded, dict):
        return "no fingerprint recorded"
    if recorded.get("version") != current["version"]:
        return f"project version {recorded.get('version')} -> {current['version']}"
    if recorded.get("config") != current["config"]:
        return "config changed"
    if recorded.get("argv") != current["argv"]:
        return "command line changed"
    for path, sha in current["inputs"].items():
        if (recorded.get("inputs") or {}).get(path) != sha:
            return f"input {path} changed"
    if set(recorded.get("inputs") or {}) != set(current["inputs"]):
        return "inputs changed"
    return None
