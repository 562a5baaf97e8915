"""Running benchmark recipes: each run of a row is its script in a fresh process (through
tools.workflows.launch), its output shown and kept in <run folder>.log, and on success the runner's
record (with the recipe's fingerprint) beside its result.

    uv run python -m scripts.benchmark --run resnet20_l2_macs50_ft6

    for b in plan(benchmarks, ["resnet20_l2_macs50_ft6"]):
        run_benchmark(b, benchmarks, Path("results/bench"))

Re-running skips finished runs, re-runs changed ones (the old folder is kept as <folder>.stale/),
and a train or pruning run that stopped mid-way resumes from its last.pth. One runner at a time
holds a run folder (a lock in it; a second one exits 2 naming the holder), so the seeds of one row
can run side by side, one runner per core or GPU:

    uv run python -m scripts.benchmark --run resnet20_full_l2_macs50_kd_ft15 --seeds 0 &
    uv run python -m scripts.benchmark --run resnet20_full_l2_macs50_kd_ft15 --seeds 1
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from tools.core.device import cpu_name
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.core.run_folder import BENCHMARK_RECORD, LAST, LOCK, RunLock
from tools.workflows.bench_recipe import COMMAND, SCRIPTS, Benchmark
from tools.workflows.launch import run_teed, script_command


# ----------------------------------------------------------------------------- running
def model_path(b: Benchmark, results_root: Path) -> Path:
    """The model a dependent row starts from: a seeded row's first seed's."""
    return b.run_dir(results_root, b.seeds[0]) / SCRIPTS[b.script].model


def script_argv(
    b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path, seed: int | None = None
) -> list[str]:
    """The script's command line for one run of this benchmark (without `python -m scripts.<script>`);
    a seeded row's run sets `train.seed` (no seed given: its first seed's run)."""
    seed = b.seeds[0] if seed is None else seed
    run_dir = b.run_dir(results_root, seed)
    models = [str(model_path(benchmarks[n], results_root)) for n in b.cfg.bench.needs]
    argv = ["--config", str(b.path)] + (["--set", f"train.seed={seed}"] if seed is not None else [])
    if b.script == "train":
        argv += ["--save-dir", str(run_dir)]
    elif b.script.startswith("prune_"):
        argv += ["--checkpoint", models[0], "--save-dir", str(run_dir)]
    if (
        b.script in ("train", "prune_structured", "prune_unstructured")
        and (run_dir / LAST).is_file()
        and not b.result_path(results_root, seed).is_file()
    ):  # killed mid-way: continue from its last epoch
        argv += ["--resume", str(run_dir / LAST)]
    if b.script == "quantize":
        argv += ["--checkpoint", *models[:1], "--save-dir", str(run_dir)] if models else ["--save-dir", str(run_dir)]
    elif b.script == "profile":
        argv += [
            "--baseline",
            models[0],
            "--pruned",
            *models[1:],
            "--measure-latency",
            "--save-results",
            str(b.result_path(results_root)),
        ]
    elif b.script == "loader_speed":
        argv += ["--save-results", str(b.result_path(results_root))]
    return argv + list(b.cfg.bench.args)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def host_description(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)} (1 GPU)"
    return f"{cpu_name()}, {os.cpu_count()} cores"


def run_benchmark(
    b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path, only_seeds: list[int] | None = None
) -> float:
    """Run every unfinished run of one benchmark (each seed in turn; `only_seeds`: only those of a
    seeded row's seeds). Returns seconds."""
    for need in b.cfg.bench.needs:
        if not benchmarks[need].done(results_root):
            raise UserError(f"benchmark {b.name} needs {need}, which has not finished; run --run {need} first")
        if (
            SCRIPTS[benchmarks[need].script].model
            and not (model := model_path(benchmarks[need], results_root)).is_file()
        ):
            raise UserError(
                f"benchmark {b.name} starts from {model}, which this checkout lacks (git keeps a run's records, "
                f"not its weights): copy it from the machine that ran {need}, or move {results_root / need} "
                f"aside and run --run {need} (the rows built on it then read as stale)"
            )
    return sum(run_held(b, benchmarks, results_root, seed) for seed in b.todo(results_root, only_seeds))


def run_held(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path, seed: int | None) -> float:
    """One run under its folder's lock; skipped (0 s) when another runner finished it meanwhile."""
    with RunLock(b.run_dir(results_root, seed), command=COMMAND.format(name=b.name)):
        return 0.0 if seed in b.done_seeds(results_root) else run_once(b, benchmarks, results_root, seed)


def set_aside_stale(run_dir: Path, reason: str) -> None:
    """Move a stale run's files to <run_dir>.stale/ (all but a runner's lock, which stays): nothing of
    the old run may be resumed or read as the new one's."""
    stale = run_dir.with_name(f"{run_dir.name}.stale")
    shutil.rmtree(stale, ignore_errors=True)
    stale.mkdir()
    for path in run_dir.iterdir():
        if path.name != LOCK:
            path.rename(stale / path.name)
    print(f"== {run_dir}: stale ({reason}); the old run moved to {stale}")


def run_once(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path, seed: int | None) -> float:
    """Run one benchmark run's script in a fresh process (clean threads, seeds and memory), its output
    shown and kept in <run folder>.log; on success write the runner's record. Returns seconds."""
    if b.result_path(results_root, seed).is_file() and (reason := b.stale_reason(results_root, seed)):
        set_aside_stale(b.run_dir(results_root, seed), reason)
    fp = b.fingerprint(results_root)
    argv = script_argv(b, benchmarks, results_root, seed)
    command = script_command(b.script, argv)
    log_path = b.run_dir(results_root, seed).with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ python -m scripts.{b.script} {' '.join(argv)}\n  (log: {log_path})", flush=True)
    start = time.perf_counter()
    with open(log_path, "a", buffering=1) as log:  # line-buffered: the log can be followed live
        log.write(f"\n# {datetime.now(timezone.utc).isoformat()} python -m scripts.{b.script} {' '.join(argv)}\n")
        code = run_teed(command, log)
    wall_s = time.perf_counter() - start
    if code != 0 or not b.result_path(results_root, seed).is_file():
        raise UserError(
            f"benchmark {b.name} failed (exit {code}) without writing {b.result_path(results_root, seed)}; "
            f"see {log_path}, fix the cause and re-run --run {b.name} to resume"
        )
    atomic_write_yaml(
        b.run_dir(results_root, seed) / BENCHMARK_RECORD,
        {
            "benchmark": b.name,
            "config": str(b.path),
            "command": COMMAND.format(name=b.name),
            "script_command": f"python -m scripts.{b.script} {' '.join(argv)}",
            "wall_time_s": wall_s,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host_description(b.cfg.bench.device),
            "fingerprint": fp,
        },
    )
    return wall_s
