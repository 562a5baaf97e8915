"""Atomic file writes: a crash never leaves a half-written result behind (run folders: tools.core.run_folder).

run_dir = Path("results/train/quickstart")
atomic_write_yaml(run_dir / "metrics.yaml", {"top1": 91.2})
atomic_torch_save({"model": model.state_dict()}, run_dir / "last.pth")
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temp file lives in the target folder so the rename never crosses file systems.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full while writing carries no file name: name the target
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_yaml(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(to_yaml_safe(obj), sort_keys=False))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rewrites the whole (small) CSV each time, so it is always complete."""
    buffer = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_yaml_mapping(path: str | Path) -> dict | None:
    """The YAML mapping in `path`; None when the file is missing, unreadable, not YAML or not a
    mapping, so callers can raise the one-line error that fits their use."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def to_yaml_safe(obj: Any) -> Any:
    """Tensors, numpy scalars, tuples and paths become plain YAML types."""
    if isinstance(obj, dict):
        return {k if isinstance(k, (str, int, float, bool)) else str(k): to_yaml_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_yaml_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_yaml_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj
