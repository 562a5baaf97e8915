"""Benchmarks as data: every YAML in cfgs/bench/ with a `bench:` section is one recipe and one row
(or, for profile runs, a group of rows) of docs/benchmarks.md.

    uv run python -m scripts.benchmark --list
    uv run python -m scripts.benchmark --run resnet20_l2_macs50_ft6

    benchmarks = discover(Path("cfgs/bench"))
    for b in plan(benchmarks, ["resnet20_l2_macs50_ft6"]): ...   # its baseline first
    write_doc(benchmarks, results_root=Path("results/bench"), doc=Path("docs/benchmarks.md"))

A benchmark's run folder is results/bench/<name>/. It is done when its script's result file
exists (each script writes it last, atomically), so re-running skips finished rows, and a train
row that stopped mid-way resumes from its last.pth. The doc's tables are rebuilt from the run
folders only: a figure in a generated table is always one some run wrote.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tools.config import Config, config_from_dict, config_to_dict, load_config
from tools.errors import UserError
from tools.io import atomic_write_text, atomic_write_yaml, read_yaml_mapping
from tools.training import finetune_train_config


@dataclass(frozen=True)
class ScriptSpec:
    result: str  # written last by the script: its existence means the run finished
    model: str | None  # the model file a later benchmark can start from


SCRIPTS = {
    "train": ScriptSpec("metrics.yaml", "best_model.pth"),
    "prune_structured": ScriptSpec("metrics.yaml", "pruned_model.pth"),
    "prune_unstructured": ScriptSpec("metrics.yaml", "pruned_model.pth"),
    "profile": ScriptSpec("profile.yaml", None),
    "loader_speed": ScriptSpec("loader_speed.yaml", None),
}
RECORD = "benchmark.yaml"  # the runner's own record in the run folder: command, wall time, host
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

    def run_dir(self, results_root: Path) -> Path:
        return results_root / self.name

    def result_path(self, results_root: Path) -> Path:
        return self.run_dir(results_root) / SCRIPTS[self.script].result

    def done(self, results_root: Path) -> bool:
        return self.result_path(results_root).is_file()

    def state(self, results_root: Path) -> str:
        """done | partial (its folder exists without the result: started, not finished) | pending"""
        return "done" if self.done(results_root) else "partial" if self.run_dir(results_root).exists() else "pending"


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
    for key in b.cfg.bench.targets:
        if key not in TARGETS:
            raise UserError(f"{where}.targets.{key} is not a known target; choose from {', '.join(TARGETS)}")
    wanted = {"train": 0, "loader_speed": 0, "prune_structured": 1, "prune_unstructured": 1}.get(b.script)
    needs = b.cfg.bench.needs
    if wanted is not None and len(needs) != wanted or b.script == "profile" and len(needs) < 2:
        count = "a baseline and at least one pruned model" if b.script == "profile" else f"{wanted}"
        raise UserError(f"{where}.needs has {len(needs)} entries; {b.script} takes {count}")
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
    return b.run_dir(results_root) / SCRIPTS[b.script].model


def script_argv(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path) -> list[str]:
    """The script's command line for this benchmark (without `python -m scripts.<script>`)."""
    run_dir = b.run_dir(results_root)
    models = [str(model_path(benchmarks[n], results_root)) for n in b.cfg.bench.needs]
    argv = ["--config", str(b.path)]
    if b.script == "train":
        argv += ["--save-dir", str(run_dir)]
        if (run_dir / "last.pth").is_file() and not b.done(results_root):
            argv += ["--resume", str(run_dir / "last.pth")]
    elif b.script.startswith("prune_"):
        argv += ["--checkpoint", models[0], "--save-dir", str(run_dir)]
    elif b.script == "profile":
        argv += ["--baseline", models[0], "--pruned", *models[1:], "--measure-latency",
                 "--save-results", str(b.result_path(results_root))]
    else:
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


def run_benchmark(b: Benchmark, benchmarks: dict[str, Benchmark], results_root: Path) -> float:
    """Run one benchmark's script in a fresh process (clean threads, seeds and memory), its output
    shown and kept in <run folder>.log; on success write the runner's record. Returns seconds."""
    for need in b.cfg.bench.needs:
        if not benchmarks[need].done(results_root):
            raise UserError(f"benchmark {b.name} needs {need}, which has not finished; run --run {need} first")
    argv = script_argv(b, benchmarks, results_root)
    command = [sys.executable, "-m", f"scripts.{b.script}", *argv]
    log_path = b.run_dir(results_root).with_suffix(".log")
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
    if code != 0 or not b.done(results_root):
        raise UserError(f"benchmark {b.name} failed (exit {code}) without writing {b.result_path(results_root)}; "
                        f"see {log_path}, fix the cause and re-run --run {b.name} to resume")
    atomic_write_yaml(b.run_dir(results_root) / RECORD, {
        "benchmark": b.name, "config": str(b.path), "command": COMMAND.format(name=b.name),
        "script_command": f"python -m scripts.{b.script} {' '.join(argv)}", "wall_time_s": wall_s,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": host_description(b.cfg.bench.device),
    })
    return wall_s


# ----------------------------------------------------------------------------- targets
def check_targets(targets: dict[str, float], values: dict) -> str:
    """'met', or 'MISSED: <what> <op> <bound>; ...'; values that were not measured read 'n/a'."""
    if not targets:
        return "-"
    missed, unknown = [], []
    for key, bound in targets.items():
        value_key, op, text = TARGETS[key]
        value = values.get(value_key)
        if value is None:
            unknown.append(key)
        elif not (value <= bound if op == "<=" else value >= bound):
            missed.append(f"{text.format(value)} {'>' if op == '<=' else '<'} {bound:g}")
    if missed:
        return "MISSED: " + "; ".join(missed)
    return f"n/a ({', '.join(unknown)} not measured)" if unknown else "met"


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
    """What a finished benchmark left in its run folder."""
    b: Benchmark
    config: dict  # the resolved config the script saved ({} when it saves none)
    result: dict
    record: dict  # the runner's record ({} for a run started by hand)


def read_run(b: Benchmark, results_root: Path) -> Run:
    run_dir = b.run_dir(results_root)
    config = read_yaml_mapping(run_dir / "config.yaml")
    if config is None and not b.cfg.bench.needs:  # a script that saves no config, run from the YAML alone
        config = config_to_dict(b.cfg)
    return Run(b, config or {}, read_yaml_mapping(b.result_path(results_root)) or {},
               read_yaml_mapping(run_dir / RECORD) or {})


def fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def data_text(cfg: dict) -> str:
    data = cfg.get("data")
    if not data:
        return "-"
    name = Path(data["root"]).name if data["name"] == "imagefolder" else data["name"]
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
    return "-" if wall_s is None else f"{wall_s / 60:.1f} min"


def common_columns(run: Run, epochs: str) -> dict:
    return {"model": run.config.get("model", {}).get("name", "-"), "data": data_text(run.config), "epochs": epochs,
            "seed": str(run.config.get("train", {}).get("seed", "-")), "device": device_text(run),
            "wall time": wall_text(run)}


def baseline_of(run: Run, benchmarks: dict[str, Benchmark], results_root: Path) -> Run:
    return read_run(benchmarks[run.b.cfg.bench.needs[0]], results_root)


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
    cfg = config_from_dict(run.config, f"{run.b.run_dir(results_root)}/config.yaml")
    f = finetune_train_config(cfg.train, cfg.finetune)  # what the fine-tuning really ran with
    kd = cfg.finetune.kd.alpha
    cols = {"starts from": f"{base.b.name} ({fmt(run.result.get('baseline_top1'))}%)",
            "fine-tuning": f"{f.scheduler}, lr {f.lr:g}" + (f", label smoothing {f.label_smoothing:g}"
                                                           if f.label_smoothing else ""),
            "KD alpha": f"{kd:g}" if kd else "off",
            **common_columns(run, f"{ft} fine-tune (baseline {base_epochs})")}
    return cols, values


def structured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, s = run.result, run.config["structured"]
    cols, values = prune_columns(run, benchmarks, results_root)
    values["macs_reduction_pct"] = r.get("macs_reduction_pct")
    values["latency_reduction_pct"] = r.get("latency_reduction_pct")
    steps = s["iterative_steps"]
    return [{"method": f"{s['method']} ({'global' if s['global_pruning'] else 'per-layer'}, round_to {s['round_to']})",
             "steps": "one-shot" if steps == 1 else f"{steps} rounds",
             "MACs reduction": fmt(r.get("macs_reduction_pct"), ".1f", "%"),
             "params reduction": fmt(r.get("params_reduction_pct"), ".1f", "%"),
             "latency reduction: predicted / measured (spread)": latency_text(r),
             "top-1 before -> after pruning -> fine-tuned":
                 f"{fmt(r.get('baseline_top1'))} -> {fmt(r['pruned_before_finetune']['top1'])} -> {fmt(r.get('pruned_top1'))}",
             "drop (pts)": fmt(r.get("accuracy_drop"), "+.2f"),
             "target": check_targets(run.b.cfg.bench.targets, values), **cols}]


def latency_text(r: dict) -> str:
    """A latency-targeted run's predicted and measured reductions, the spread and where timed."""
    lat = r.get("latency")
    if lat is None:
        return "-"
    predicted = "-" if lat.get("predicted_reduction_pct") is None else f"{lat['predicted_reduction_pct']:.1f}%"
    return (f"{predicted} / {lat['measured_reduction_pct']:.1f}% (+-{lat['spread_pts']:.1f}) "
            f"{lat['backend']} batch {lat['batch_size']}, {lat['threads']} thread(s)")


def unstructured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, u = run.result, run.config["unstructured"]
    cols, values = prune_columns(run, benchmarks, results_root)
    steps = "one-shot" if not u["iterative"] else f"{u['num_iterations']} steps ({u['schedule']})"
    return [{"method": f"{r['method']} ({r['mode']})", "steps": steps,
             "sparsity": fmt(100 * r["actual_sparsity"], ".2f", "%"),
             "top-1 before -> after pruning -> fine-tuned":
                 f"{fmt(r.get('baseline_top1'))} -> {fmt(r.get('pruned_top1'))} -> {fmt(r.get('finetuned_top1'))}",
             "drop (pts)": fmt(r.get("accuracy_drop"), "+.2f"),
             "non-zero MACs (theoretical speed-up)": f"{r['nonzero_macs'] / 1e6:.2f}M ({r['theoretical_speedup']:.2f}x)",
             "checkpoint MiB: dense -> compressed": f"{r['dense_size_bytes'] / 2**20:.2f} -> "
                                                    f"{r['compressed_size_bytes'] / 2**20:.2f}" if "compressed_size_bytes" in r else "-",
             "2:4 kernels": semi_structured_text(r.get("semi_structured")),
             "target": check_targets(run.b.cfg.bench.targets, values), **cols}]


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


ROWS = {"train": train_rows, "prune_structured": structured_rows, "prune_unstructured": unstructured_rows,
        "profile": profile_rows, "loader_speed": loader_rows}


def pending_row(b: Benchmark, results_root: Path, cuda: bool) -> dict:
    """What the recipe says a row will be, before it has run."""
    if b.cfg.bench.device == "cuda" and not cuda:
        why = "needs a CUDA GPU"
    else:
        why = "started, not finished" if b.state(results_root) == "partial" else "not run yet"
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
        found = ROWS[b.script](read_run(b, results_root), benchmarks, results_root) if b.done(results_root) \
            else [pending_row(b, results_root, cuda)]
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
