"""Run a grid of pruning (or training) runs, resumably, and find the accuracy-vs-cost frontier.

    uv run python -m scripts.sweep --sweep cfgs/sweeps/quickstart_unstructured.yaml --workers 2

A sweep YAML names the script, a base config, the grid (dotted config key -> list of values),
the checkpoint to prune and the metric/cost keys of the frontier. Each point is a normal run
folder under results/sweep/<name>/<point>/; a point is skipped when it finished from the same base
config, grid values, --set, checkpoint and project version, so an interrupted sweep re-run finishes
only what is missing and a changed one re-runs what changed. One sweep at a time per folder.
Writes sweep.csv, sweep.yaml (rows and Pareto frontier) and pareto.png into results/sweep/<name>/.

A misspelt grid key, metric or cost is refused before any point runs. Ctrl-C (or SIGTERM) stops
the sweep: queued points do not start, running ones are terminated (their folders stay resumable),
none is recorded as done, and it exits 130 (143) with one line; the same command finishes the rest.
A point folder another live run still holds (an orphan of a killed sweep) is never deleted.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/sweep.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tools.core.cli import base_parser
from tools.core.errors import Terminated, UserError, run_cli
from tools.core.io import atomic_write_csv, atomic_write_yaml
from tools.core.run_folder import METRICS, RunLock, check_not_held, clear
from tools.reports.comparison import pareto_front
from tools.reports.report import plot_pareto
from tools.workflows.sweep import (
    PointProcesses,
    SweepSpec,
    check_grid,
    check_metric_keys,
    check_metric_names,
    expand_grid,
    point_fingerprint,
    point_name,
    point_sets,
    point_stale_reason,
    read_sweep,
    record_point,
)


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--sweep", required=True, help="sweep YAML (script, config, grid, checkpoint)")
    parser.add_argument("--workers", type=int, default=1, help="points run in parallel processes")
    args = parser.parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    return args


def point_command(spec: SweepSpec, point: dict, run_dir: Path, extra_sets: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", f"scripts.{spec.script}", "--config", spec.config, "--save-dir", str(run_dir)]
    if spec.checkpoint:
        cmd += ["--checkpoint", spec.checkpoint]
    cmd += list(spec.args)
    return cmd + ["--set", *point_sets(point, extra_sets)]


RUNNING = PointProcesses()  # the points' processes of the sweep in progress (replaced per sweep)


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
    print(f"sweep {spec.name}: {len(points)} points, {len(points) - len(todo)} already done, running {len(todo)} "
          f"with {args.workers} worker(s) into {root}")
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
            rows.append({"point": name, **p, spec.metric: lookup(metrics, spec.metric),
                         spec.cost: lookup(metrics, spec.cost), "run_dir": str(run_dir)})
    return rows, failed


def run_pool(todo: list[tuple[Path, list[str], dict]], workers: int) -> list[str]:
    """Run the points `workers` at a time, recording each one that finished; return the failed names.
    Ctrl-C / SIGTERM: cancel the queued points, terminate the running ones, exit 130 / 143 with one line."""
    global RUNNING
    RUNNING = PointProcesses()
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
        print(f"sweep interrupted ({sig}): stopped {stopped} running point(s), {not_started} queued did not start; "
              f"none of them is recorded as done, re-run the same command to finish them", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        pool.shutdown(wait=True)
    return failed


def _never_started(job) -> bool:
    return job.cancelled() or (job.exception() is None and job.result()[1] is None)


def main(argv=None):
    args = parse_args(argv)
    spec = read_sweep(args.sweep)
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise UserError(f"checkpoint {spec.checkpoint} named in {args.sweep} not found; train it first or fix the path")
    root = Path(args.save_dir) if args.save_dir else Path("results/sweep") / spec.name
    with RunLock(root):
        rows, failed = run_points(spec, root, args)
        front = pareto_front(rows, maximize=spec.metric, minimize=spec.cost)
        atomic_write_csv(root / "sweep.csv", rows)
        atomic_write_yaml(root / "sweep.yaml", {"spec": vars(spec), "rows": rows, "pareto": [r["point"] for r in front]})
        plot_pareto(rows, front, x=spec.cost, y=spec.metric, path=root / "pareto.png", title=f"sweep {spec.name}")
    print(f"Pareto frontier ({spec.metric} vs {spec.cost}): " + ", ".join(r["point"] for r in front))
    print(f"wrote {root / 'sweep.csv'}, {root / 'sweep.yaml'}, {root / 'pareto.png'}")
    if failed:
        raise UserError(f"{len(failed)} sweep point(s) failed: {', '.join(failed)}; see their sweep_point.log, then re-run to retry")


if __name__ == "__main__":
    run_cli(main)
