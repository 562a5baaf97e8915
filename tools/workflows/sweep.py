"""Sweep grids and Pareto frontiers.

    uv run python -m scripts.sweep --sweep cfgs/sweeps/quickstart_unstructured.yaml --workers 2

    >>> points = expand_grid({"unstructured.sparsity": [0.5, 0.8], "finetune.epochs": [1, 2]})
    >>> len(points), points[0]   # stable order
    (4, {'unstructured.sparsity': 0.5, 'finetune.epochs': 1})

The Pareto front of the points' rows is tools.reports.comparison.pareto_front.

A point is done when its folder's sweep_point.yaml records the fingerprint it ran from (base config,
command line, checkpoint sha256, project version) and its metrics.yaml is still the one that run
wrote; otherwise it runs again.

Before any point runs, every grid point's config is resolved (a misspelt grid key gets the config
loader's nearest-key line) and the frontier's metric and cost are checked against the numbers the
script writes (METRIC_NAMES). tools.workflows.launch.Processes runs the points' processes so that Ctrl-C stops them:
queued points never start, running ones are terminated, none is recorded as done.
"""

from __future__ import annotations

import difflib
import itertools
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.core.config import read_yaml_file
from tools.core.errors import Terminated, UserError
from tools.core.fingerprint import file_sha256, fingerprint, stale_reason
from tools.core.io import atomic_write_csv, atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import METRICS, SWEEP_POINT, RunLock, check_not_held, clear
from tools.reports.comparison import pareto_front
from tools.reports.report import plot_pareto
from tools.workflows.launch import Processes, script_command

SCRIPTS = ("train", "prune_unstructured", "prune_structured")

# The numbers each script's metrics.yaml holds at its top level (a sweep's metric / cost names one), and
# its sections of numbers (named dotted: pruned.top1). A point's real metrics.yaml is checked again.
_SIZES = ("macs", "flops", "params", "wall_time_s")
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "train": (
        *_SIZES,
        "best_val_top1",
        "best_epoch",
        "final_val_top1",
        "test_top1",
        "test_top5",
        "test_loss",
        "epochs",
        "train_images_per_s",
    ),
    "prune_unstructured": (
        "params",
        "wall_time_s",
        "target_sparsity",
        "actual_sparsity",
        "pruned_weights",
        "prunable_weights",
        "num_iterations",
        "n",
        "m",
        "dense_macs",
        "dense_flops",
        "nonzero_macs",
        "nonzero_flops",
        "nonzero_params",
        "theoretical_speedup",
        "baseline_top1",
        "baseline_top5",
        "pruned_top1",
        "pruned_top5",
        "finetuned_top1",
        "finetuned_top5",
        "accuracy_drop",
        "accuracy_drop_before_finetune",
        "dense_size_bytes",
        "compressed_size_bytes",
        "compression_ratio",
        "finetune_epochs",
        "finetune_lr",
        "seed",
    ),
    "prune_structured": (
        "wall_time_s",
        "pruning_ratio",
        "target_macs_reduction",
        "target_latency_reduction",
        "baseline_top1",
        "pruned_top1",
        "accuracy_drop",
        "macs_reduction_pct",
        "flops_reduction_pct",
        "params_reduction_pct",
        "latency_reduction_pct",
        "predicted_latency_reduction_pct",
        "latency_spread_pts",
    ),
}
FRONTIER_DEFAULTS = {
    "train": ("test_top1", "macs"),
    "prune_unstructured": ("finetuned_top1", "nonzero_macs"),
    "prune_structured": ("pruned_top1", "pruned.macs"),
}  # (metric, cost) when the file names none
METRIC_SECTIONS: dict[str, tuple[str, ...]] = {
    "train": (),
    "prune_unstructured": ("vs_original", "semi_structured", "layer_sparsity", "layers"),
    "prune_structured": (
        "baseline",
        "pruned",
        "pruned_before_finetune",
        "vs_original",
        "goal",
        "finetune",
        "channels",
        "latency",
        "sparsity_training",
    ),
}


@dataclass
class SweepSpec:
    script: str  # which script runs each point
    config: str  # base config (relative to the sweep file)
    grid: dict[str, list]  # dotted config key -> values
    checkpoint: str = ""  # trained model the pruning scripts start from
    name: str = ""  # sweep folder name; default: the sweep file's stem
    metric: str = ""  # accuracy key maximised on the frontier; default: the script's (FRONTIER_DEFAULTS)
    cost: str = ""  # cost key minimised on the frontier; default: the script's
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
    if (
        not isinstance(spec.grid, dict)
        or not spec.grid
        or not all(isinstance(v, list) and v for v in spec.grid.values())
    ):
        raise UserError(f"grid in {path} must map config keys to non-empty lists of values")
    spec.config = str((path.parent / spec.config).resolve()) if not Path(spec.config).is_absolute() else spec.config
    if spec.checkpoint and not Path(spec.checkpoint).is_absolute():
        spec.checkpoint = str(Path(spec.checkpoint))  # relative to the working directory, like every CLI path
    spec.name = spec.name or path.stem
    spec.metric = spec.metric or FRONTIER_DEFAULTS[spec.script][0]
    spec.cost = spec.cost or FRONTIER_DEFAULTS[spec.script][1]
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


def check_metric_names(spec: SweepSpec, source: str) -> None:
    """Before any point runs: the frontier's `metric` and `cost` must name numbers `spec.script` writes."""
    names, sections = METRIC_NAMES[spec.script], METRIC_SECTIONS[spec.script]
    for role in ("metric", "cost"):
        key = str(getattr(spec, role))
        head, dot, _ = key.partition(".")
        if (key in names) or (dot and head in sections):
            continue
        close = _nearest(key, names)
        hint = (
            f"{key!r} is a section; name a number in it, e.g. {key}.top1"
            if key in sections
            else f"did you mean {close!r}?"
            if close
            else f"{spec.script} writes: {', '.join(names[:12])}"
        )
        raise UserError(
            f"sweep {role} {key!r} is not a number {spec.script} writes into metrics.yaml; {hint} "
            f"Fix {role}: in {source}"
        )


def _nearest(key: str, names: tuple[str, ...]) -> str | None:
    """The closest name (difflib's ratio >= 0.6); a tie goes to the one listed first (top1 before top5)."""
    scores = [(difflib.SequenceMatcher(None, key, name).ratio(), -i, name) for i, name in enumerate(names)]
    best = max(scores, default=None)
    return best[2] if best and best[0] >= 0.6 else None


def point_sets(point: dict[str, Any], extra_sets: list[str]) -> list[str]:
    """The --set items a point's command line carries: its grid values, then the sweep's own --set."""
    return [f"{k}={v}" for k, v in point.items()] + list(extra_sets)


def check_grid(spec: SweepSpec, points: list[dict[str, Any]], extra_sets: list[str], source: str) -> None:
    """Resolve every point's config before any point runs: a misspelt grid key or a bad value gets the
    config loader's line (with its nearest key), naming the sweep file, instead of failing every point."""
    from tools.core.config import load_config

    load_config(spec.config, overrides=list(extra_sets))  # the sweep's own --set: its errors say --set
    for point in points:
        try:
            load_config(spec.config, overrides=point_sets(point, extra_sets))
        except UserError as e:
            raise UserError(f"{str(e).replace('--set', f'the grid of {source}')} (point {point_name(point)})") from None


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

    return fingerprint(
        config=config_to_dict(load_config(spec.config)),
        argv=command[1:],
        inputs=[spec.checkpoint] if spec.checkpoint else [],
    )


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


def point_command(spec: SweepSpec, point: dict, run_dir: Path, extra_sets: list[str]) -> list[str]:
    cmd = script_command(spec.script, ["--config", spec.config, "--save-dir", str(run_dir)])
    if spec.checkpoint:
        cmd += ["--checkpoint", spec.checkpoint]
    cmd += list(spec.args)
    return cmd + ["--set", *point_sets(point, extra_sets)]


RUNNING = Processes()  # the points' processes of the sweep in progress (replaced per sweep)


def run_point(cmd: list[str], run_dir: Path) -> tuple[Path, int | None]:
    """(run_dir, exit status), or (run_dir, None) when the sweep was stopped before the point started."""
    if RUNNING.stopped:
        return run_dir, None
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "sweep_point.log", "w") as log:
        return run_dir, RUNNING.run(cmd, log)


def lookup(metrics: dict, dotted: str):
    node = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def run_points(spec: SweepSpec, root: Path, args) -> tuple[list[dict], list[str]]:
    """Run every point that is not current; return the rows of the current points and the failed names."""
    points = expand_grid(spec.grid)
    check_grid(spec, points, args.set, args.sweep)
    plans = {}
    for p in points:
        run_dir = root / point_name(p)
        command = point_command(spec, p, run_dir, args.set)
        fp = point_fingerprint(spec, command)
        plans[point_name(p)] = (p, run_dir, command, fp, point_stale_reason(run_dir, fp))
    todo = [plan for plan in plans.values() if plan[4] is not None]
    done = [run_dir / METRICS for _, run_dir, _, _, reason in plans.values() if reason is None]
    if done:  # a misspelt metric/cost key fails before more points run: against a real metrics.yaml first,
        check_metric_keys(spec, yaml.safe_load(done[0].read_text()) or {}, done[0])
    check_metric_names(spec, args.sweep)  # else against the names the script writes
    print(
        f"sweep {spec.name}: {len(points)} points, {len(points) - len(todo)} already done, running {len(todo)} "
        f"with {args.workers} worker(s) into {root}"
    )
    for _, run_dir, _, _, _ in todo:  # all of them before any is deleted
        check_not_held(run_dir)
    for _, run_dir, _, _, reason in todo:
        if reason != "not run yet":
            print(f"  {run_dir.name}: again ({reason})")
        clear(run_dir)  # nothing of an earlier run is read as this one's result
    failed = run_pool([(run_dir, command, fp) for _, run_dir, command, fp, _ in todo], args.workers)
    rows = []
    for name, (p, run_dir, _, fp, _) in plans.items():
        if point_stale_reason(run_dir, fp) is None:
            metrics = yaml.safe_load((run_dir / METRICS).read_text()) or {}
            check_metric_keys(spec, metrics, run_dir / METRICS)
            rows.append(
                {
                    "point": name,
                    **p,
                    spec.metric: lookup(metrics, spec.metric),
                    spec.cost: lookup(metrics, spec.cost),
                    "run_dir": str(run_dir),
                }
            )
    return rows, failed


def run_pool(todo: list[tuple[Path, list[str], dict]], workers: int) -> list[str]:
    """Run the points `workers` at a time, recording each one that finished; return the failed names.
    Ctrl-C / SIGTERM: cancel the queued points, terminate the running ones, exit 130 / 143 with one line."""
    global RUNNING
    RUNNING = Processes()
    failed: list[str] = []
    jobs: list = []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        jobs += [(pool.submit(run_point, command, run_dir), fp) for run_dir, command, fp in todo]
        for job, fp in jobs:
            run_dir, code = job.result()
            ok = code == 0 and (run_dir / METRICS).is_file()
            print(f"  {run_dir.name}: {'done' if ok else f'FAILED (exit {code}), see {run_dir}/sweep_point.log'}")
            if ok:
                record_point(run_dir, fp)
            else:
                failed.append(run_dir.name)
    except (KeyboardInterrupt, Terminated) as stop:
        pool.shutdown(wait=False, cancel_futures=True)
        stopped = RUNNING.stop()
        pool.shutdown(wait=True)  # its threads return as soon as their process is gone
        not_started = len(todo) - len(jobs) + sum(1 for job, _ in jobs if _never_started(job))
        sig, code = ("SIGTERM", 143) if isinstance(stop, Terminated) else ("Ctrl-C", 130)
        print(
            f"sweep interrupted ({sig}): stopped {stopped} running point(s), {not_started} queued did not start; "
            f"none of them is recorded as done, re-run the same command to finish them",
            file=sys.stderr,
        )
        raise SystemExit(code) from None
    finally:
        pool.shutdown(wait=True)
    return failed


def _never_started(job) -> bool:
    return job.cancelled() or (job.exception() is None and job.result()[1] is None)


def sweep(args) -> None:
    """The whole command: `args` as scripts.sweep parses them (--sweep, --workers, --set, --save-dir)."""
    spec = read_sweep(args.sweep)
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise UserError(f"checkpoint {spec.checkpoint} named in {args.sweep} not found; train it first or fix the path")
    root = Path(args.save_dir) if args.save_dir else Path("results/sweep") / spec.name
    with RunLock(root):
        rows, failed = run_points(spec, root, args)
        front = pareto_front(rows, maximize=spec.metric, minimize=spec.cost)
        atomic_write_csv(root / "sweep.csv", rows)
        atomic_write_yaml(
            root / "sweep.yaml", {"spec": vars(spec), "rows": rows, "pareto": [r["point"] for r in front]}
        )
        plot_pareto(rows, front, x=spec.cost, y=spec.metric, path=root / "pareto.png", title=f"sweep {spec.name}")
    print(f"Pareto frontier ({spec.metric} vs {spec.cost}): " + ", ".join(r["point"] for r in front))
    print(f"wrote {root / 'sweep.csv'}, {root / 'sweep.yaml'}, {root / 'pareto.png'}")
    if failed:
        raise UserError(
            f"{len(failed)} sweep point(s) failed: {', '.join(failed)}; see their sweep_point.log, then re-run to retry"
        )
