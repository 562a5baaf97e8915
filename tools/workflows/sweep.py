"""Sweep grids and Pareto frontiers.

    uv run python -m scripts.sweep --sweep cfgs/sweeps/quickstart_unstructured.yaml --workers 2

    >>> points = expand_grid({"unstructured.sparsity": [0.5, 0.8], "finetune.epochs": [1, 2]})
    >>> len(points), points[0]   # stable order
    (4, {'unstructured.sparsity': 0.5, 'finetune.epochs': 1})

The Pareto front of the points' rows is tools.reports.comparison.pareto_front.

A point is done when its folder's sweep_point.yaml records the fingerprint it ran from (base config,
command line, checkpoint sha256, project version) and its metrics.yaml is still the one that run
wrote; otherwise it runs again.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.core.config import read_yaml_file
from tools.core.errors import UserError
from tools.core.fingerprint import file_sha256, fingerprint, stale_reason
from tools.core.io import atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import METRICS, SWEEP_POINT

SCRIPTS = ("train", "prune_unstructured", "prune_structured")


@dataclass
class SweepSpec:
    script: str  # which script runs each point
    config: str  # base config (relative to the sweep file)
    grid: dict[str, list]  # dotted config key -> values
    checkpoint: str = ""  # trained model the pruning scripts start from
    name: str = ""  # sweep folder name; default: the sweep file's stem
    metric: str = "top1"  # accuracy key maximised on the frontier
    cost: str = "macs"  # cost key minimised on the frontier
    args: list[str] = field(default_factory=list)  # extra command-line flags for every point


def read_sweep(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} not found; pass a YAML with script, config and grid (see cfgs/sweeps/)")
    raw = read_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise UserError(f"sweep file {path} must be a mapping with script, config and grid")
    known = set(SweepSpec.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"unknown key {unknown[0]} in sweep file {path}; valid keys: {', '.join(sorted(known))}")
    for key in ("script", "config", "grid"):
        if key not in raw:
            raise UserError(f"sweep file {path} lacks '{key}'")
    spec = SweepSpec(**raw)
    if spec.script not in SCRIPTS:
        raise UserError(f"unknown script {spec.script!r} in {path}; choose one of: {', '.join(SCRIPTS)}")
    if not isinstance(spec.grid, dict) or not spec.grid or not all(isinstance(v, list) and v for v in spec.grid.values()):
        raise UserError(f"grid in {path} must map config keys to non-empty lists of values")
    spec.config = str((path.parent / spec.config).resolve()) if not Path(spec.config).is_absolute() else spec.config
    if spec.checkpoint and not Path(spec.checkpoint).is_absolute():
        spec.checkpoint = str(Path(spec.checkpoint))  # relative to the working directory, like every CLI path
    spec.name = spec.name or path.stem
    return spec


def check_metric_keys(spec: SweepSpec, metrics: dict, source: Path) -> None:
    """The frontier's `metric` and `cost` must name numbers in a point's metrics.yaml (dotted
    for nested keys); a misspelt key would otherwise leave an empty column and no frontier."""
    for role in ("metric", "cost"):
        key = getattr(spec, role)
        node: Any = metrics
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            numbers = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            close = difflib.get_close_matches(key, numbers, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"numbers there: {', '.join(numbers[:12])}"
            raise UserError(f"sweep {role} {key!r} is not a number in {source}; {hint} Fix {role}: in the sweep file")


def expand_grid(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Cartesian product in the order the keys and values are written."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict[str, Any]) -> str:
    """A readable, file-system-safe folder name: 'sparsity0.5_epochs1'."""
    parts = [f"{key.rsplit('.', 1)[-1]}{value}" for key, value in point.items()]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))


def point_fingerprint(spec: SweepSpec, command: list[str]) -> dict:
    """What a point's result depends on: the base config file as resolved (its `base:` chain included),
    the point's command line (grid values, --set, flags), the checkpoint's sha256, the project version."""
    from tools.core.config import config_to_dict, load_config

    return fingerprint(config=config_to_dict(load_config(spec.config)), argv=command[1:],
                       inputs=[spec.checkpoint] if spec.checkpoint else [])


def point_stale_reason(run_dir: Path, current: dict) -> str | None:
    """None when the point's metrics.yaml is the one a run from `current` wrote; else why it must run."""
    record = read_yaml_mapping(run_dir / SWEEP_POINT) or {}
    if not (run_dir / METRICS).is_file() or not record:
        return "not run yet"
    if record.get("result_sha256") != file_sha256(run_dir / METRICS):
        return "metrics.yaml was rewritten by another run"
    return stale_reason(record.get("fingerprint"), current)


def record_point(run_dir: Path, fp: dict) -> None:
    atomic_write_yaml(run_dir / SWEEP_POINT, {"fingerprint": fp, "result_sha256": file_sha256(run_dir / METRICS)})
