"""Run a grid of pruning (or training) runs, resumably, and find the accuracy-vs-cost frontier.

    uv run python -m scripts.sweep --sweep cfgs/sweeps/quickstart_unstructured.yaml --workers 2

A sweep YAML names the script, a base config, the grid (dotted config key -> list of values),
the checkpoint to prune and the metric/cost keys of the frontier. Each point is a normal run
folder under results/sweep/<name>/<point>/; a point whose metrics.yaml exists is skipped, so an
interrupted sweep re-run finishes only what is missing. Writes sweep.csv, sweep.yaml (rows and
Pareto frontier) and pareto.png into results/sweep/<name>/.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tools.cli import base_parser
from tools.errors import UserError, run_cli
from tools.io import atomic_write_csv, atomic_write_yaml
from tools.report import plot_pareto
from tools.sweep import SweepSpec, check_metric_keys, expand_grid, pareto_front, point_name, read_sweep


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
    sets = [f"{k}={v}" for k, v in point.items()] + list(extra_sets)
    return cmd + ["--set", *sets]


def run_point(cmd: list[str], run_dir: Path) -> tuple[Path, int]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "sweep_point.log", "w") as log:
        return run_dir, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def lookup(metrics: dict, dotted: str):
    node = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def main(argv=None):
    args = parse_args(argv)
    spec = read_sweep(args.sweep)
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise UserError(f"checkpoint {spec.checkpoint} named in {args.sweep} not found; train it first or fix the path")
    root = Path(args.save_dir) if args.save_dir else Path("results/sweep") / spec.name
    points = expand_grid(spec.grid)
    todo = [(p, root / point_name(p)) for p in points if not (root / point_name(p) / "metrics.yaml").is_file()]
    done = [root / point_name(p) / "metrics.yaml" for p in points if (p, root / point_name(p)) not in todo]
    if done:  # a misspelt metric/cost key fails before more points run
        check_metric_keys(spec, yaml.safe_load(done[0].read_text()) or {}, done[0])
    print(f"sweep {spec.name}: {len(points)} points, {len(points) - len(todo)} already done, running {len(todo)} "
          f"with {args.workers} worker(s) into {root}")
    failed = []
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        jobs = [pool.submit(run_point, point_command(spec, p, d, args.set), d) for p, d in todo]
        for job in jobs:
            run_dir, code = job.result()
            print(f"  {run_dir.name}: {'done' if code == 0 else f'FAILED (exit {code}), see {run_dir}/sweep_point.log'}")
            if code != 0:
                failed.append(run_dir.name)

    rows = []
    for p in points:
        path = root / point_name(p) / "metrics.yaml"
        if path.is_file():
            metrics = yaml.safe_load(path.read_text()) or {}
            check_metric_keys(spec, metrics, path)
            rows.append({"point": point_name(p), **p, spec.metric: lookup(metrics, spec.metric),
                         spec.cost: lookup(metrics, spec.cost), "run_dir": str(path.parent)})
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
