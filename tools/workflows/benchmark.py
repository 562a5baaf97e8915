"""Benchmarks as data: every YAML in cfgs/bench/ with a `bench:` section is one recipe and one row
(or, for profile runs, a group of rows) of docs/benchmarks.md.

    uv run python -m scripts.benchmark --list
    uv run python -m scripts.benchmark --run resnet20_l2_macs50_ft6

    benchmarks = discover(Path("cfgs/bench"))
    for b in plan(benchmarks, ["resnet20_l2_macs50_ft6"]): ...   # its baseline first
    write_doc(benchmarks, results_root=Path("results/bench"), doc=Path("docs/benchmarks.md"))

A benchmark's run folder is results/bench/<name>/; a row with `bench.seeds: [0, 1, 2]` runs once
per seed (`train.seed`, i.e. fine-tuning seed for a pruning row: same baseline) into
results/bench/<name>/seed<k>/, and its table row shows the mean +- sample standard deviation over
the finished seeds with n; targets are judged on the mean, and one whose margin is inside one
standard deviation says "within noise". A run is done when its script's result file exists (each
script writes it last, atomically) and the runner's record says it ran from the recipe and needed
rows as they are now (a fingerprint; records from before fingerprints are trusted), so re-running
skips finished runs, re-runs changed ones (the old folder is kept as <folder>.stale/), and a train
or pruning run that stopped mid-way resumes from its last.pth. One runner at a time holds a row
(a lock in its folder; a second one exits 2 naming the holder). The doc's tables are rebuilt from
the run folders only: a figure in a generated table is always one some run wrote.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tools.core.config import Config, config_from_dict, config_to_dict, load_config
from tools.core.errors import UserError
from tools.core.fingerprint import digest, fingerprint, stale_reason
from tools.core.io import atomic_write_text, atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import (
    BENCHMARK_RECORD,
    BEST,
    CONFIG,
    LAST,
    LOADER_SPEED,
    LOCK,
    METRICS,
    PROFILE,
    PRUNED_MODEL,
    QUANTIZE_RECORD,
    RunLock,
)
from tools.training.fit import finetune_train_config


@dataclass(frozen=True)
class ScriptSpec:
    result: str  # written last by the script: its existence means the run finished
    model: str | None  # the model file a later benchmark can start from


SCRIPTS = {
    "train": ScriptSpec(METRICS, BEST),
    "prune_structured": ScriptSpec(METRICS, PRUNED_MODEL),
    "prune_unstructured": ScriptSpec(METRICS, PRUNED_MODEL),
    "profile": ScriptSpec(PROFILE, None),
    "loader_speed": ScriptSpec(LOADER_SPEED, None),
    "quantize": ScriptSpec(QUANTIZE_RECORD, "model.onnx"),  # model.int8.onnx lies beside it
}

COMMAND = "uv run python -m scripts.benchmark --run {name}"

# target name -> (measured value it bounds, comparison, how the value reads)
TARGETS = {
    "max_drop": ("drop", "<=", "top-1 drop {:.2f} pts"),
    "min_macs_reduction_pct": ("macs_reduction_pct", ">=", "MACs reduction {:.1f}%"),
    "max_finetune_fraction": ("finetune_fraction", "<=", "fine-tune epochs / baseline epochs {:.2f}"),
    "min_latency_ratio": ("latency_ratio", ">=", "latency reduction / MACs reduction {:.2f}"),
    "min_latency_reduction_pct": ("latency_reduction_pct", ">=", "measured latency reduction {:.1f}%"),
    "min_loader_ratio": ("loader_ratio", ">=", "loader / step images/s {:.1f}x"),
    "max_wall_min": ("wall_min", "<=", "wall time {:.1f} min"),
    "min_speedup": ("speedup", ">=", "speed-up vs the baseline at the largest batch {:.2f}x"),
    "min_size_ratio": ("size_ratio", ">=", "file {:.2f}x smaller than the baseline's"),
}


@dataclass
class Benchmark:
    name: str
    path: Path
    cfg: Config
    description: str  # the YAML's leading comment

    @property
    def script(self) -> str:
        return self.cfg.bench.script

    @property
    def seeds(self) -> list[int | None]:
        """The row's runs: one per `bench.seeds` entry, or one unseeded run (None)."""
        return list(self.cfg.bench.seeds) or [None]

    def run_dir(self, results_root: Path, seed: int | None = None) -> Path:
        """The row's folder, or with a seed the folder of that seed's run."""
        return results_root / self.name if seed is None else results_root / self.name / f"seed{seed}"

    def result_path(self, results_root: Path, seed: int | None = None) -> Path:
        return self.run_dir(results_root, seed) / SCRIPTS[self.script].result

    def todo(self, results_root: Path, only_seeds: list[int] | None = None) -> list[int | None]:
        """The unfinished runs; `only_seeds` keeps a seeded row's runs to those seeds (an unseeded row's one run stays)."""
        done = self.done_seeds(results_root)
        return [s for s in self.seeds if s not in done and (only_seeds is None or s is None or s in only_seeds)]

    def done_seeds(self, results_root: Path) -> list[int | None]:
        """The runs that finished from the recipe as it is now."""
        return [s for s in self.seeds if self.result_path(results_root, s).is_file()
                and self.stale_reason(results_root, s) is None]

    def done(self, results_root: Path) -> bool:
        """Every run of the row has finished."""
        return len(self.done_seeds(results_root)) == len(self.seeds)

    def fingerprint(self, results_root: Path) -> dict:
        """The recipe (less how the doc shows it and which seeds run) and the records of the rows it needs."""
        recipe = config_to_dict(self.cfg)
        recipe.pop("pipeline", None)  # read by scripts.pipeline only, which no row runs: adding it stales nothing
        _drop_legacy(recipe, ADDED_KEYS)
        recipe["bench"] = {k: v for k, v in recipe["bench"].items() if k not in ("table", "targets", "seeds")}
        needs = {n: digest(read_yaml_mapping(need_record(results_root / n))) for n in self.cfg.bench.needs}
        return fingerprint(config={"recipe": recipe, "needs": needs}, argv=[self.script])

    def stale_reason(self, results_root: Path, seed: int | None = None) -> str | None:
        """Why a run's result no longer matches its recipe; None when it does or was recorded without a fingerprint."""
        recorded = (read_yaml_mapping(self.run_dir(results_root, seed) / BENCHMARK_RECORD) or {}).get("fingerprint")
        return None if recorded is None else stale_reason(recorded, self.fingerprint(results_root))

    def state(self, results_root: Path) -> str:
        """done | stale (a result from another recipe or baseline) | partial (started, not finished;
        with seeds: 'partial 1/3') | pending"""
        if self.done(results_root):
            return "done"
        if any(self.result_path(results_root, s).is_file() and self.stale_reason(results_root, s) for s in self.seeds):
            return "stale"
        finished = len(self.done_seeds(results_root))
        if finished:
            return f"partial {finished}/{len(self.seeds)}"
        return "partial" if self.run_dir(results_root).exists() else "pending"


# Config keys added after records were made: the value that behaves as before they existed, and
# whether a recipe reads the key at all. Left out of the fingerprint at that value or where unread,
# so adding an option stales no record, even when its default is new; otherwise it counts as usual.
ADDED_KEYS = {
    "structured.latency.allocation": ("per_ms", lambda recipe: recipe["structured"]["target_latency_reduction"] > 0),
    "export.rtol": (0.0, lambda recipe: recipe["bench"]["script"] == "export_onnx"),  # only --verify reads it
    # every recorded row read its images on the fast path, where "dataset" statistics were the rule
    "data.normalize": ("dataset", lambda recipe: True),
    "data.mean": ([], lambda recipe: True),
    "data.std": ([], lambda recipe: True),
}


def _drop_legacy(recipe: dict, keys: dict) -> None:
    for key, (legacy, reads) in keys.items():
        *parents, leaf = key.split(".")
        section = recipe
        for part in parents:
            section = section[part]
        if section[leaf] == legacy or not reads(recipe):
            del section[leaf]


def need_record(row_dir: Path) -> Path:
    """The runner's record of the run a dependent row starts from (a seeded row: its first seed's)."""
    seeded = sorted(row_dir.glob(f"seed*/{BENCHMARK_RECORD}"), key=lambda p: int(p.parent.name[4:]))
    return row_dir / BENCHMARK_RECORD if (row_dir / BENCHMARK_RECORD).is_file() or not seeded else seeded[0]


# ----------------------------------------------------------------------------- discovery
def leading_comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith(("uv run", "--")):  # command examples are not description
            continue
        lines.append(text)
    return " ".join(lines)


def discover(bench_dir: Path) -> dict[str, Benchmark]:
    """Every cfgs/bench/*.yaml whose `bench.script` is set; files without one are shared bases."""
    if not bench_dir.is_dir():
        raise UserError(f"benchmark folder {bench_dir} not found; run from the repo root (it holds cfgs/bench/)")
    benchmarks = {}
    for path in sorted(bench_dir.glob("*.yaml")):
        cfg = load_config(path)
        if cfg.bench.script:
            benchmarks[path.stem] = Benchmark(path.stem, path, cfg, leading_comment(path))
    for b in benchmarks.values():
        validate(b, benchmarks)
    return benchmarks


def validate(b: Benchmark, benchmarks: dict[str, Benchmark]) -> None:
    where = f"{b.path}: bench"
    if b.script not in SCRIPTS:
        raise UserError(f"{where}.script {b.script!r} is not one of {', '.join(SCRIPTS)}")
    if b.cfg.bench.device not in ("cpu", "cuda"):
        raise UserError(f"{where}.device {b.cfg.bench.device!r} must be cpu or cuda")
    if not b.cfg.bench.table:
        raise UserError(f"{where}.table is empty; name the docs/benchmarks.md table the row belongs to")
    if b.cfg.bench.expected_min < 0:
        raise UserError(f"{where}.expected_min {b.cfg.bench.expected_min:g} must be >= 0 minutes (0 = no estimate)")
    for key in b.cfg.bench.targets:
        if key not in TARGETS:
            raise UserError(f"{where}.targets.{key} is not a known target; choose from {', '.join(TARGETS)}")
    wanted = {"train": 0, "loader_speed": 0, "prune_structured": 1, "prune_unstructured": 1}.get(b.script)
    needs = b.cfg.bench.needs
    if b.script == "quantize" and len(needs) > 1:  # 0: the checkpoint is named in bench.args
        raise UserError(f"{where}.needs has {len(needs)} entries; quantize takes at most 1")
    if wanted is not None and len(needs) != wanted or b.script == "profile" and len(needs) < 2:
        count = "a baseline and at least one pruned model" if b.script == "profile" else f"{wanted}"
        raise UserError(f"{where}.needs has {len(needs)} entries; {b.script} takes {count}")
    if len(set(b.cfg.bench.seeds)) != len(b.cfg.bench.seeds):
        raise UserError(f"{where}.seeds {b.cfg.bench.seeds} repeats a seed; list each seed once")
    for need in needs:
        if need not in benchmarks:
            raise UserError(f"{where}.needs names {need!r}, which is no benchmark in {b.path.parent}")
        if SCRIPTS[benchmarks[need].script].model is None:
            raise UserError(f"{where}.needs names {need!r}, a {benchmarks[need].script} benchmark with no model")


def plan(benchmarks: dict[str, Benchmark], names: list[str]) -> list[Benchmark]:
    """`names` and everything they need, dependencies first."""
    order: list[Benchmark] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise UserError(f"benchmarks depend on each other in a cycle: {' -> '.join(chain + (name,))}")
        if name not in benchmarks:
            close = difflib.get_close_matches(name, benchmarks, n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(f"unknown benchmark {name!r}; {hint}--list shows them all")
        for need in benchmarks[name].cfg.bench.needs:
            visit(need, chain + (name,))
        if benchmarks[name] not in order:
            order.append(benchmarks[name])

    for name in names:
        visit(name, ())
    return order


# ----------------------------------------------------------------------------- running
def model_path(b: Benchmark, results_root: Path) -> Path:
    """The model a dependent row starts from: a seeded row's first seed's."""
    return b.run_dir(results_root, b.seeds[0]) / SCRIPTS[b.script].model


def script_argv(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path,
                seed: int | None = None) -> list[str]:
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
    if b.script in ("train", "prune_structured", "prune_unstructured") and (run_dir / LAST).is_file() \
            and not b.result_path(results_root, seed).is_file():  # killed mid-way: continue from its last epoch
        argv += ["--resume", str(run_dir / LAST)]
    if b.script == "quantize":
        argv += ["--checkpoint", *models[:1], "--save-dir", str(run_dir)] if models else ["--save-dir", str(run_dir)]
    elif b.script == "profile":
        argv += ["--baseline", models[0], "--pruned", *models[1:], "--measure-latency",
                 "--save-results", str(b.result_path(results_root))]
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
    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def run_benchmark(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path,
                  only_seeds: list[int] | None = None) -> float:
    """Run every unfinished run of one benchmark (each seed in turn; `only_seeds`: only those of a
    seeded row's seeds). Returns seconds."""
    for need in b.cfg.bench.needs:
        if not benchmarks[need].done(results_root):
            raise UserError(f"benchmark {b.name} needs {need}, which has not finished; run --run {need} first")
    with RunLock(b.run_dir(results_root), command=COMMAND.format(name=b.name)):
        return sum(run_once(b, benchmarks, results_root, seed) for seed in b.todo(results_root, only_seeds))


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
    command = [sys.executable, "-m", f"scripts.{b.script}", *argv]
    log_path = b.run_dir(results_root, seed).with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ python -m scripts.{b.script} {' '.join(argv)}\n  (log: {log_path})", flush=True)
    start = time.perf_counter()
    with open(log_path, "a", buffering=1) as log:  # line-buffered: the log can be followed live
        log.write(f"\n# {datetime.now(timezone.utc).isoformat()} python -m scripts.{b.script} {' '.join(argv)}\n")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})  # lines as they happen, not in blocks
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    wall_s = time.perf_counter() - start
    if code != 0 or not b.result_path(results_root, seed).is_file():
        raise UserError(f"benchmark {b.name} failed (exit {code}) without writing {b.result_path(results_root, seed)}; "
                        f"see {log_path}, fix the cause and re-run --run {b.name} to resume")
    atomic_write_yaml(b.run_dir(results_root, seed) / BENCHMARK_RECORD, {
        "benchmark": b.name, "config": str(b.path), "command": COMMAND.format(name=b.name),
        "script_command": f"python -m scripts.{b.script} {' '.join(argv)}", "wall_time_s": wall_s,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": host_description(b.cfg.bench.device), "fingerprint": fp,
    })
    return wall_s


# ----------------------------------------------------------------------------- targets
def check_targets(targets: dict[str, float], values: dict, spreads: dict | None = None) -> str:
    """'met', or 'MISSED: <what> <op> <bound>; ...'; values that were not measured read 'n/a'. With
    `spreads` (standard deviations over seeds), a verdict whose margin to its bound is inside one
    standard deviation says "within noise": another seed could have landed on the other side."""
    if not targets:
        return "-"
    missed, unknown, noisy = [], [], []
    for key, bound in targets.items():
        value_key, op, text = TARGETS[key]
        value, spread = values.get(value_key), (spreads or {}).get(value_key)
        if value is None:
            unknown.append(key)
            continue
        noise = f"within noise, std {spread:.2f}" if spread and abs(value - bound) <= spread else ""
        if not (value <= bound if op == "<=" else value >= bound):
            missed.append(f"{text.format(value)} {'>' if op == '<=' else '<'} {bound:g}" + (f" ({noise})" if noise else ""))
        elif noise:
            noisy.append(f"{text.format(value)}, {noise.removeprefix('within noise, ')}")
    if missed:
        return "MISSED: " + "; ".join(missed)
    if unknown:
        return f"n/a ({', '.join(unknown)} not measured)"
    return f"met, within noise ({'; '.join(noisy)})" if noisy else "met"


def finetune_epochs(cfg: dict, script: str) -> int:
    """Every epoch of training the pruning run spent, intermediate rounds and sparsity training included."""
    final = cfg["finetune"]["epochs"]
    if script == "prune_structured":
        s = cfg["structured"]
        extra = (s["iterative_steps"] - 1) * s["step_epochs"]
        return final + extra + (s["bn_scale"]["epochs"] if s["method"] == "bn_scale" else 0)
    u = cfg["unstructured"]
    return final + ((u["num_iterations"] - 1) * u["step_epochs"] if u["iterative"] else 0)


# ----------------------------------------------------------------------------- rows
@dataclass
class Run:
    """What a finished benchmark left in its run folder; for a seeded row, its finished seeds together:
    `result` holds their means and `spread` the sample standard deviations of the same keys."""
    b: Benchmark
    config: dict  # the resolved config the script saved ({} when it saves none); a seeded row: its first seed's
    result: dict
    record: dict  # the runner's record ({} for a run started by hand)
    seeds: list[int] = field(default_factory=list)  # the seeds aggregated; [] for an unseeded row
    spread: dict = field(default_factory=dict)


def read_run(b: Benchmark, results_root: Path, seed: int | None = None) -> Run:
    run_dir = b.run_dir(results_root, seed)
    config = read_yaml_mapping(run_dir / CONFIG)
    if config is None and not b.cfg.bench.needs:  # a script that saves no config, run from the YAML alone
        config = config_to_dict(b.cfg)
    return Run(b, config or {}, read_yaml_mapping(b.result_path(results_root, seed)) or {},
               read_yaml_mapping(run_dir / BENCHMARK_RECORD) or {})


def read_row(b: Benchmark, results_root: Path) -> Run:
    """The row's figures: its one run, or the mean and spread of its finished seeds."""
    seeds = b.done_seeds(results_root)
    if seeds == [None]:
        return read_run(b, results_root)
    runs = [read_run(b, results_root, s) for s in seeds]
    mean, spread = mean_and_spread([r.result for r in runs])
    return Run(b, runs[0].config, mean, runs[0].record, seeds=list(seeds), spread=spread)


def mean_and_spread(results: list[dict]) -> tuple[dict, dict]:
    """Per key of the first result: the mean and sample standard deviation of a number every result
    has (mappings recursively; a number all results share stays as it is), else the first's value."""
    mean, spread = {}, {}
    for key, first in results[0].items():
        values = [r.get(key) for r in results]
        if all(isinstance(v, dict) for v in values):
            mean[key], spread[key] = mean_and_spread(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            mean[key] = first if len(set(values)) == 1 else statistics.fmean(values)
            spread[key] = statistics.stdev(values) if len(values) > 1 else 0.0
        else:
            mean[key] = first
    return mean, spread


def fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def fmt_stat(run: Run, key: str, spec: str = ".2f", suffix: str = "", section: str | None = None) -> str:
    """A figure of the row (`result[section][key]` with a section); over several seeds, mean ± std."""
    result, spread = (run.result.get(section) or {}, run.spread.get(section) or {}) if section else (run.result, run.spread)
    value = result.get(key)
    if len(run.seeds) < 2 or value is None:
        return fmt(value, spec, suffix)
    return f"{value:{spec}} ± {spread.get(key, 0.0):.2f}{suffix}"


def data_text(cfg: dict) -> str:
    data = cfg.get("data")
    if not data:
        return "-"
    name = Path(data["root"]).name if data["name"] in ("imagefolder", "packed") else data["name"]
    if data["name"] == "synthetic":
        name = f"synthetic {data['synthetic']['resolution']} px"
    subsets = [f"{n:,} {split}" for n, split in ((data["train_subset"], "train"), (data["test_subset"], "test")) if n]
    return f"{name} ({' / '.join(subsets)} subsets)" if subsets else f"{name} (full)"


def device_text(run: Run, device: str | None = None, threads: int | None = None) -> str:
    device = device or run.result.get("device") or run.b.cfg.bench.device
    threads = threads or (run.config.get("train") or {}).get("num_threads")
    parts = [run.record.get("host")] + ([f"{threads} thread{'s' * (threads > 1)}"] if threads and device == "cpu" else [])
    detail = ", ".join(p for p in parts if p)
    return f"{device} ({detail})" if detail else str(device)


def wall_text(run: Run) -> str:
    wall_s = run.result.get("wall_time_s") or run.record.get("wall_time_s")
    return "-" if wall_s is None else f"{wall_s / 60:.1f} min" + (" per seed" if len(run.seeds) > 1 else "")


def seed_text(run: Run) -> str:
    if run.seeds:
        return f"n={len(run.seeds)} ({', '.join(map(str, run.seeds))})"
    return str(run.config.get("train", {}).get("seed", "-"))


def common_columns(run: Run, epochs: str) -> dict:
    return {"model": run.config.get("model", {}).get("name", "-"), "data": data_text(run.config), "epochs": epochs,
            "seed": seed_text(run), "device": device_text(run), "wall time": wall_text(run)}


def baseline_of(run: Run, benchmarks: dict[str, Benchmark], results_root: Path) -> Run:
    need = benchmarks[run.b.cfg.bench.needs[0]]
    return read_run(need, results_root, need.seeds[0])  # the run whose model this row started from


def train_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, t = run.result, run.config["train"]
    schedule = f"{t['scheduler']}, lr {t['lr']:g}, batch {run.config['data']['batch_size']}" + \
        (f", label smoothing {t['label_smoothing']:g}" if t["label_smoothing"] else "") + \
        (f", {t['amp']} autocast" if t["amp"] != "none" else "")
    values = {"wall_min": r["wall_time_s"] / 60}
    return [{"test top-1": fmt(r.get("test_top1"), ".2f", "%"), "test top-5": fmt(r.get("test_top5"), ".2f", "%"),
             "MACs (FLOPs = 2 x MACs)": f"{r['macs'] / 1e6:.2f}M ({r['flops'] / 1e6:.2f}M)",
             "schedule": schedule, "target": check_targets(run.b.cfg.bench.targets, values),
             **common_columns(run, f"{r['epochs']} (of {t['epochs']})")}]


def prune_columns(run: Run, benchmarks, results_root) -> tuple[dict, dict]:
    """Columns and target values shared by structured and unstructured rows."""
    base = baseline_of(run, benchmarks, results_root)
    ft = finetune_epochs(run.config, run.b.script)
    base_epochs = base.result.get("epochs")
    values = {"drop": run.result.get("accuracy_drop"),
              "finetune_fraction": ft / base_epochs if base_epochs else None}
    spreads = {"drop": run.spread.get("accuracy_drop")}
    cfg = config_from_dict(run.config, f"{run.b.run_dir(results_root)}/config.yaml")
    f = finetune_train_config(cfg.train, cfg.finetune)  # what the fine-tuning really ran with
    kd = cfg.finetune.kd.alpha
    cols = {"starts from": f"{base.b.name} ({fmt(run.result.get('baseline_top1'))}%)",
            "fine-tuning": f"{f.scheduler}, lr {f.lr:g}" + (f", label smoothing {f.label_smoothing:g}"
                                                           if f.label_smoothing else ""),
            "KD alpha": f"{kd:g}" if kd else "off",
            **common_columns(run, f"{ft} fine-tune (baseline {base_epochs})")}
    return cols, values, spreads


def structured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, s = run.result, run.config["structured"]
    cols, values, spreads = prune_columns(run, benchmarks, results_root)
    values["macs_reduction_pct"] = r.get("macs_reduction_pct")
    spreads["macs_reduction_pct"] = run.spread.get("macs_reduction_pct")
    values["latency_reduction_pct"] = r.get("latency_reduction_pct")
    steps = s["iterative_steps"]
    return [{"method": f"{s['method']} ({'global' if s['global_pruning'] else 'per-layer'}, round_to {s['round_to']})",
             "steps": "one-shot" if steps == 1 else f"{steps} rounds",
             "MACs reduction": fmt_stat(run, "macs_reduction_pct", ".1f", "%"),
             "params reduction": fmt(r.get("params_reduction_pct"), ".1f", "%"),
             "latency reduction: predicted / measured (spread)": latency_text(r),
             "top-1 before -> after pruning -> fine-tuned":
                 f"{fmt(r.get('baseline_top1'))} -> {fmt_stat(run, 'top1', section='pruned_before_finetune')} -> "
                 f"{fmt_stat(run, 'pruned_top1')}",
             "drop (pts)": fmt_stat(run, "accuracy_drop", "+.2f"),
             "target": check_targets(run.b.cfg.bench.targets, values, spreads), **cols}]


def latency_text(r: dict) -> str:
    """A latency-targeted run's predicted and measured reductions, the spread and where timed."""
    lat = r.get("latency")
    if lat is None:
        return "-"
    predicted = "-" if lat.get("predicted_reduction_pct") is None else f"{lat['predicted_reduction_pct']:.1f}%"
    searched = "" if predicted == "-" else f", allocation {lat.get('allocation', 'per_ms')}"  # per_ms: older runs
    return (f"{predicted} / {lat['measured_reduction_pct']:.1f}% (+-{lat['spread_pts']:.1f}) "
            f"{lat['backend']} batch {lat['batch_size']}, {lat['threads']} thread(s){searched}")


def unstructured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, u = run.result, run.config["unstructured"]
    cols, values, spreads = prune_columns(run, benchmarks, results_root)
    steps = "one-shot" if not u["iterative"] else f"{u['num_iterations']} steps ({u['schedule']})"
    return [{"method": f"{r['method']} ({r['mode']})", "steps": steps,
             "sparsity": fmt(100 * r["actual_sparsity"], ".2f", "%"),
             "top-1 before -> after pruning -> fine-tuned":
                 f"{fmt(r.get('baseline_top1'))} -> {fmt_stat(run, 'pruned_top1')} -> {fmt_stat(run, 'finetuned_top1')}",
             "drop (pts)": fmt_stat(run, "accuracy_drop", "+.2f"),
             "non-zero MACs (theoretical speed-up)": f"{r['nonzero_macs'] / 1e6:.2f}M ({r['theoretical_speedup']:.2f}x)",
             "checkpoint MiB: dense -> compressed": f"{r['dense_size_bytes'] / 2**20:.2f} -> "
                                                    f"{r['compressed_size_bytes'] / 2**20:.2f}" if "compressed_size_bytes" in r else "-",
             "2:4 kernels": semi_structured_text(r.get("semi_structured")),
             "target": check_targets(run.b.cfg.bench.targets, values, spreads), **cols}]


def semi_structured_text(section: dict | None) -> str:
    """Measured 2:4 kernel speed-ups of an N:M run, or why there are none."""
    if section is None:
        return "-"
    if section.get("timings"):
        return "; ".join(f"{t['layer']} batch {t['batch_size']}: {t['speedup']:.2f}x" for t in section["timings"])
    if "layers" not in section:
        return "not timed (no CUDA)"
    if any(row["eligible"] for row in section["layers"]):
        return f"not timed ({section['device']})"
    return "no eligible layer: " + "; ".join(f"{row['layer']} {row['reason']}" for row in section["layers"]) \
        if section["layers"] else "no linear layer"


def profile_rows(run: Run, benchmarks, results_root) -> list[dict]:
    """One row per pruned model, backend and batch size of the profile."""
    if any("onnx" in m for m in run.result["models"]):
        return onnx_profile_rows(run, benchmarks, results_root)
    models = {m["label"]: m for m in run.result["models"]}
    base_label = run.result["models"][0]["label"]
    names = dict(zip((m["label"] for m in run.result["models"][1:]), run.b.cfg.bench.needs[1:]))
    baseline = baseline_of(run, benchmarks, results_root)
    rows = []
    for row in run.result["flops_vs_latency"]:
        base_ms = models[base_label]["latency"][row["backend"]][row["batch_size"]]["median_ms"]
        stats = models[row["model"]]["latency"][row["backend"]][row["batch_size"]]
        values = {"latency_ratio": row["latency_over_flops_reduction"]}
        rows.append({"baseline": baseline.b.name, "pruned model": names.get(row["model"], row["model"]),
                     "backend": row["backend"],
                     "batch": str(row["batch_size"]), "MACs reduction": fmt(row["flops_reduction_pct"], ".1f", "%"),
                     "median latency ms: baseline -> pruned": f"{base_ms:.2f} -> {stats['median_ms']:.2f}",
                     "latency reduction": fmt(row["latency_reduction_pct"], ".1f", "%"),
                     "latency / MACs reduction": fmt(row["latency_over_flops_reduction"], ".2f"),
                     "noise (p90 / median)": fmt(row["noise_p90_over_median"], ".2f"),
                     "target": check_targets(run.b.cfg.bench.targets, values),
                     "model": baseline.config.get("model", {}).get("name", "-"), "data": "random inputs", "epochs": "-",
                     "seed": "-", "device": device_text(run, stats["device"], stats.get("num_threads")),
                     "wall time": wall_text(run)})
    return rows


def loader_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r = run.result
    values = {"loader_ratio": r["loader_images_per_s"] / r["step_images_per_s"]}
    return [{"batch": str(r["batch_size"]), "loader only": f"{r['loader_images_per_s']:,.0f} images/s",
             "training step": f"{r['step_images_per_s']:,.0f} images/s ({r['model']})",
             "loader / step": f"{values['loader_ratio']:,.1f}x", "target": check_targets(run.b.cfg.bench.targets, values),
             **common_columns(run, "-")}]


def quantize_rows(run: Run, benchmarks, results_root) -> list[dict]:
    """One row per scripts.quantize run: both ONNX files' accuracy (ONNX Runtime) and size."""
    r, c = run.result, run.result["calibration"]
    floats = r["float_nodes"]
    return [{"starts from": r["source"], "calibration": f"{c['method']}, {c['num_images']} train images, "
             f"{'per-channel' if c['per_channel_weights'] else 'per-tensor'} weights, {c['activations']} activations",
             "ORT top-1: FP32 -> INT8": f"{r['fp32']['top1']:.2f}% -> {r['int8']['top1']:.2f}%"
                                         + (" (QAT)" if r["int8"]["method"] == "qat" else ""),
             "drop (pts)": fmt(r["drop"], "+.2f"),
             "file MiB: FP32 -> INT8": f"{r['fp32']['size_bytes'] / 2**20:.3f} -> {r['int8']['size_bytes'] / 2**20:.3f} "
                                       f"({r['size_ratio']:.2f}x)",
             "ops left in FP32": ", ".join(n["op_type"] for n in floats) if floats else "none",
             "target": check_targets(run.b.cfg.bench.targets, {"drop": r["drop"]}),
             **common_columns(run, "-")}]


def onnx_profile_rows(run: Run, benchmarks, results_root) -> list[dict]:
    """A profile of ONNX files (scripts.quantize's FP32 and INT8 files): one row per file with its
    size, ONNX Runtime accuracy (from the quantize.yaml beside it) and latency at every batch
    against the first file. The targets judge the last file."""
    models = run.result["models"]
    quantized = [read_yaml_mapping(Path(m["onnx"]).parent / QUANTIZE_RECORD) or {} for m in models]
    configs = [read_yaml_mapping(Path(m["onnx"]).parent / CONFIG) or {} for m in models]
    top1 = [q.get("int8" if m["precision"] == "int8" else "fp32", {}).get("top1") for m, q in zip(models, quantized)]
    base, base_top1 = models[0], top1[0]
    rows = []
    for i, m in enumerate(models):
        lat, base_lat = m["latency"]["onnxruntime"], base["latency"]["onnxruntime"]
        largest = max(lat)
        drop = base_top1 - top1[i] if None not in (base_top1, top1[i]) else None
        values = {"drop": drop, "speedup": base_lat[largest]["median_ms"] / lat[largest]["median_ms"],
                  "size_ratio": base["size_bytes"] / m["size_bytes"]}
        row = {"variant": f"{Path(m['onnx']).parent.name} {m['precision'].upper()}",
               "MACs": fmt(m["macs"] and m["macs"] / 1e6, ".2f", "M"),
               "file MiB (x smaller)": f"{m['size_bytes'] / 2**20:.3f} ({values['size_ratio']:.2f}x)",
               "ORT top-1": fmt(top1[i], ".2f", "%"), "drop (pts)": fmt(drop, "+.2f")}
        for bs, stats in lat.items():
            row[f"median ms, batch {bs} (speed-up)"] = f"{stats['median_ms']:.2f} " \
                                                       f"({base_lat[bs]['median_ms'] / stats['median_ms']:.2f}x)"
        row["noise (p90 / median)"] = fmt(max(s["p90_ms"] / s["median_ms"] for s in lat.values()), ".2f")
        targets = run.b.cfg.bench.targets if i == len(models) - 1 else {}
        rows.append(row | {"target": check_targets(targets, values), "model": configs[i].get("model", {}).get("name", "-"),
                           "data": data_text(configs[i]),
                           "epochs": "-", "seed": "-", "device": device_text(run, "cpu", lat[largest].get("num_threads")),
                           "wall time": wall_text(run)})
    return rows


ROWS = {"train": train_rows, "prune_structured": structured_rows, "prune_unstructured": unstructured_rows,
        "profile": profile_rows, "loader_speed": loader_rows, "quantize": quantize_rows}


def pending_row(b: Benchmark, results_root: Path, cuda: bool) -> dict:
    """What the recipe says a row will be, before it has run."""
    if b.cfg.bench.device == "cuda" and not cuda:
        why = "needs a CUDA GPU"
    else:
        state = b.state(results_root)
        why = {"partial": "started, not finished", "stale": "stale, " + next(
            (r for s in b.seeds if (r := b.stale_reason(results_root, s))), "")}.get(state, "not run yet")
        n = len(b.cfg.bench.seeds)
        why += f" ({n} seed{'s' * (n > 1)})" if n else ""
    cfg = config_to_dict(b.cfg)
    row = {"target": f"pending: {why}", "device": b.cfg.bench.device}
    if b.script in ("train", "loader_speed"):  # the YAML alone is the whole recipe
        row |= {"model": cfg["model"]["name"], "data": data_text(cfg), "seed": str(cfg["train"]["seed"])}
    if b.script == "train":
        row["epochs"] = str(cfg["train"]["epochs"])
    elif b.script.startswith("prune_"):
        row["epochs"] = f"{finetune_epochs(cfg, b.script)} fine-tune"
    return row


def table_rows(benchmarks: dict[str, Benchmark], table: str, results_root: Path, cuda: bool) -> list[dict]:
    rows = []
    for b in benchmarks.values():
        if b.cfg.bench.table != table:
            continue
        found = ROWS[b.script](read_row(b, results_root), benchmarks, results_root) if b.done_seeds(results_root) \
            else [pending_row(b, results_root, cuda)]
        if b.done_seeds(results_root) and not b.done(results_root):  # some seeds finished: say the row is not whole
            found = [row | {"target": f"partial, {len(b.done_seeds(results_root))} of {len(b.seeds)} seeds: {row['target']}"}
                     for row in found]
        rows += [{"benchmark": b.name, **row, "command": f"`{COMMAND.format(name=b.name)}`"} for row in found]
    return rows


LAST_COLUMNS = ["model", "data", "epochs", "seed", "device", "wall time", "target", "command"]


def markdown_table(rows: list[dict], order: list[str] | None = None) -> str:
    """Columns in order of first appearance (or of `order`), the LAST_COLUMNS at the end."""
    columns = list(dict.fromkeys(c for row in rows for c in row if c not in LAST_COLUMNS))
    if order:
        columns.sort(key=order.index)
    columns += [c for c in LAST_COLUMNS if any(c in row for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "-")).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


SUMMARY = "summary"  # the block listing every row that has targets, and whether it met them
SUMMARY_COLUMNS = ["benchmark", "pruned model", "backend", "batch", "MACs reduction", "sparsity", "drop (pts)",
                   "latency / MACs reduction", "loader / step", "epochs", "device", "wall time", "target"]  # what it shows, in order


def summary_rows(benchmarks: dict[str, Benchmark], results_root: Path, cuda: bool, tables: list[str]) -> list[dict]:
    """Rows with targets, table by table in the order of `tables`."""
    rows = []
    for table in tables:
        for row in table_rows(benchmarks, table, results_root, cuda):
            if benchmarks[row["benchmark"]].cfg.bench.targets:
                rows.append({"table": table, **{c: row[c] for c in SUMMARY_COLUMNS if c in row}})
    return rows


def marker(table: str) -> tuple[str, str]:
    return f"<!-- benchmark:{table} -->", f"<!-- /benchmark:{table} -->"


def render_doc(text: str, benchmarks: dict[str, Benchmark], results_root: Path, cuda: bool) -> str:
    """`text` with every generated table block replaced by the current rows; a table with no block
    in the doc yet is appended at the end under its own heading."""
    tables = list(dict.fromkeys(b.cfg.bench.table for b in benchmarks.values()))
    tables.sort(key=lambda t: text.find(marker(t)[0]) % (len(text) + 1))  # doc order; tables not in it last
    for table in tables + [SUMMARY]:
        start, end = marker(table)
        if table == SUMMARY:
            if start not in text:
                continue
            rows, about = markdown_table(summary_rows(benchmarks, results_root, cuda, tables), ["table"] + SUMMARY_COLUMNS), ""
        else:
            rows = markdown_table(table_rows(benchmarks, table, results_root, cuda))
            about = "\n".join(f"- `{b.name}`: {b.description}" for b in benchmarks.values()
                              if b.cfg.bench.table == table and b.description)
        block = f"{start}\n<!-- generated by scripts.benchmark from the run folders: do not edit -->\n{rows}\n" + \
            (f"\n{about}\n" if about else "") + end
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip("\n") + f"\n\n## {table}\n\n{block}\n"
    return text if text.endswith("\n") else text + "\n"


def write_doc(benchmarks: dict[str, Benchmark], *, results_root: Path, doc: Path, cuda: bool) -> Path:
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    atomic_write_text(doc, render_doc(text, benchmarks, results_root, cuda))
    return doc
