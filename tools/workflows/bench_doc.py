"""docs/benchmarks.md from the run folders: each table block between its markers is rebuilt from
what the benchmark runs wrote (a seeded row: mean +- sample standard deviation over the finished
seeds, with n), so a figure in a generated table is always one some run wrote.

    uv run python -m scripts.benchmark --doc-only

    write_doc(benchmarks, results_root=Path("results/bench"), doc=Path("docs/benchmarks.md"), cuda=False)
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tools.core.config import config_from_dict, config_to_dict
from tools.core.io import atomic_write_text, read_yaml_mapping
from tools.core.run_folder import BENCHMARK_RECORD, CONFIG, QUANTIZE_RECORD
from tools.measure.describe import checkpoint_selection
from tools.reports.tables import records_table
from tools.training.fit import finetune_train_config
from tools.workflows.bench_recipe import COMMAND, Benchmark, check_targets


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
    return Run(
        b,
        config or {},
        read_yaml_mapping(b.result_path(results_root, seed)) or {},
        read_yaml_mapping(run_dir / BENCHMARK_RECORD) or {},
    )


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
    result, spread = (
        (run.result.get(section) or {}, run.spread.get(section) or {}) if section else (run.result, run.spread)
    )
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
    parts = [run.record.get("host")] + (
        [f"{threads} thread{'s' * (threads > 1)}"] if threads and device == "cpu" else []
    )
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
    return {
        "model": run.config.get("model", {}).get("name", "-"),
        "data": data_text(run.config),
        "epochs": epochs,
        "seed": seed_text(run),
        "device": device_text(run),
        "wall time": wall_text(run),
    }


def selected_on(result: dict, val_split: float, epochs: int) -> str:
    """The record's checkpoint_selected_on; records written before it existed: what their config
    implies (a fine-tuning with data.val_split 0 chose its best epoch on the test set)."""
    return result.get("checkpoint_selected_on") or checkpoint_selection(val_split, epochs)


def baseline_of(run: Run, benchmarks: dict[str, Benchmark], results_root: Path) -> Run:
    need = benchmarks[run.b.cfg.bench.needs[0]]
    return read_run(need, results_root, need.seeds[0])  # the run whose model this row started from


def train_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, t = run.result, run.config["train"]
    schedule = (
        f"{t['scheduler']}, lr {t['lr']:g}, batch {run.config['data']['batch_size']}"
        + (f", label smoothing {t['label_smoothing']:g}" if t["label_smoothing"] else "")
        + (f", {t['amp']} autocast" if t["amp"] != "none" else "")
    )
    values = {"wall_min": r["wall_time_s"] / 60}
    return [
        {
            "test top-1": fmt(r.get("test_top1"), ".2f", "%"),
            "test top-5": fmt(r.get("test_top5"), ".2f", "%"),
            "MACs (FLOPs = 2 x MACs)": f"{r['macs'] / 1e6:.2f}M ({r['flops'] / 1e6:.2f}M)",
            "schedule": schedule,
            "target": check_targets(run.b.cfg.bench.targets, values),
            "checkpoint chosen on": selected_on(r, run.config["data"].get("val_split", 0), r["epochs"]),
            **common_columns(run, f"{r['epochs']} (of {t['epochs']})"),
        }
    ]


def prune_columns(run: Run, benchmarks, results_root) -> tuple[dict, dict]:
    """Columns and target values shared by structured and unstructured rows."""
    base = baseline_of(run, benchmarks, results_root)
    ft = finetune_epochs(run.config, run.b.script)
    base_epochs = base.result.get("epochs")
    cfg = config_from_dict(run.config, f"{run.b.run_dir(results_root)}/config.yaml")
    values = {
        "drop": run.result.get("accuracy_drop"),
        "finetune_fraction": ft / base_epochs if base_epochs else None,
        "selected_on": selected_on(run.result, cfg.data.val_split, ft),
    }
    spreads = {"drop": run.spread.get("accuracy_drop")}
    f = finetune_train_config(cfg.train, cfg.finetune)  # what the fine-tuning really ran with
    kd = cfg.finetune.kd.alpha
    cols = {
        "starts from": f"{base.b.name} ({fmt(run.result.get('baseline_top1'))}%)",
        "fine-tuning": f"{f.scheduler}, lr {f.lr:g}"
        + (f", label smoothing {f.label_smoothing:g}" if f.label_smoothing else ""),
        "KD alpha": f"{kd:g}" if kd else "off",
        "checkpoint chosen on": values["selected_on"],
        **common_columns(run, f"{ft} fine-tune (baseline {base_epochs})"),
    }
    return cols, values, spreads


def structured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, s = run.result, run.config["structured"]
    cols, values, spreads = prune_columns(run, benchmarks, results_root)
    values["macs_reduction_pct"] = r.get("macs_reduction_pct")
    spreads["macs_reduction_pct"] = run.spread.get("macs_reduction_pct")
    values["latency_reduction_pct"] = r.get("latency_reduction_pct")
    steps = s["iterative_steps"]
    int8 = int8_columns(run, values, spreads)
    return [
        {
            **int8,
            "method": f"{s['method']} ({'global' if s['global_pruning'] else 'per-layer'}, round_to {s['round_to']})",
            "steps": "one-shot" if steps == 1 else f"{steps} rounds",
            "MACs reduction": fmt_stat(run, "macs_reduction_pct", ".1f", "%"),
            "params reduction": fmt(r.get("params_reduction_pct"), ".1f", "%"),
            "latency reduction: predicted / measured (spread)": latency_text(r),
            "top-1 before -> after pruning -> fine-tuned": f"{fmt(r.get('baseline_top1'))} -> {fmt_stat(run, 'top1', section='pruned_before_finetune')} -> "
            f"{fmt_stat(run, 'pruned_top1')}",
            "drop (pts)": fmt_stat(run, "accuracy_drop", "+.2f"),
            "target": check_targets(run.b.cfg.bench.targets, values, spreads),
            **cols,
        }
    ]


INT8_KEYS = ("int8_drop", "int8_speedup_vs_dense_fp32", "int8_speedup_vs_dense_int8", "int8_size_ratio_vs_dense_fp32")


def int8_columns(run: Run, values: dict, spreads: dict) -> dict:
    """The deployed INT8 file of an onnxruntime-int8 row (none for other rows, so their tables keep
    their columns): its drop against the FP32 baseline, speed-ups and size ratio, as target values too."""
    if "int8_top1" not in run.result:
        return {}
    values |= {k: run.result.get(k) for k in INT8_KEYS}
    spreads |= {k: run.spread.get(k) for k in INT8_KEYS}
    return {
        "INT8 file: top-1 (drop)": f"{fmt_stat(run, 'int8_top1')} ({fmt_stat(run, 'int8_drop', '+.2f')})",
        "INT8 speed-up vs dense FP32 / dense INT8": f"{fmt_stat(run, 'int8_speedup_vs_dense_fp32', '.2f', 'x')} / "
        f"{fmt_stat(run, 'int8_speedup_vs_dense_int8', '.2f', 'x')}",
        "INT8 file smaller than dense FP32": fmt_stat(run, "int8_size_ratio_vs_dense_fp32", ".2f", "x"),
    }


def latency_text(r: dict) -> str:
    """A latency-targeted run's predicted and measured reductions, the spread and where timed."""
    lat = r.get("latency")
    if lat is None:
        return "-"
    predicted = "-" if lat.get("predicted_reduction_pct") is None else f"{lat['predicted_reduction_pct']:.1f}%"
    searched = "" if predicted == "-" else f", allocation {lat.get('allocation', 'per_ms')}"  # per_ms: older runs
    return (
        f"{predicted} / {lat['measured_reduction_pct']:.1f}% (+-{lat['spread_pts']:.1f}) "
        f"{lat['backend']} batch {lat['batch_size']}, {lat['threads']} thread(s){searched}"
    )


def unstructured_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r, u = run.result, run.config["unstructured"]
    cols, values, spreads = prune_columns(run, benchmarks, results_root)
    steps = "one-shot" if not u["iterative"] else f"{u['num_iterations']} steps ({u['schedule']})"
    return [
        {
            "method": f"{r['method']} ({r['mode']})",
            "steps": steps,
            "sparsity": fmt(100 * r["actual_sparsity"], ".2f", "%"),
            "top-1 before -> after pruning -> fine-tuned": f"{fmt(r.get('baseline_top1'))} -> {fmt_stat(run, 'pruned_top1')} -> {fmt_stat(run, 'finetuned_top1')}",
            "drop (pts)": fmt_stat(run, "accuracy_drop", "+.2f"),
            "non-zero MACs (theoretical speed-up)": f"{r['nonzero_macs'] / 1e6:.2f}M ({r['theoretical_speedup']:.2f}x)",
            "checkpoint MiB: dense -> compressed": f"{r['dense_size_bytes'] / 2**20:.2f} -> "
            f"{r['compressed_size_bytes'] / 2**20:.2f}"
            if "compressed_size_bytes" in r
            else "-",
            "2:4 kernels": semi_structured_text(r.get("semi_structured")),
            "target": check_targets(run.b.cfg.bench.targets, values, spreads),
            **cols,
        }
    ]


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
    return (
        "no eligible layer: " + "; ".join(f"{row['layer']} {row['reason']}" for row in section["layers"])
        if section["layers"]
        else "no linear layer"
    )


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
        rows.append(
            {
                "baseline": baseline.b.name,
                "pruned model": names.get(row["model"], row["model"]),
                "backend": row["backend"],
                "batch": str(row["batch_size"]),
                "MACs reduction": fmt(row["flops_reduction_pct"], ".1f", "%"),
                "median latency ms: baseline -> pruned": f"{base_ms:.2f} -> {stats['median_ms']:.2f}",
                "latency reduction": fmt(row["latency_reduction_pct"], ".1f", "%"),
                "latency / MACs reduction": fmt(row["latency_over_flops_reduction"], ".2f"),
                "noise (p90 / median)": fmt(row["noise_p90_over_median"], ".2f"),
                "target": check_targets(run.b.cfg.bench.targets, values),
                "model": baseline.config.get("model", {}).get("name", "-"),
                "data": "random inputs",
                "epochs": "-",
                "seed": "-",
                "device": device_text(run, stats["device"], stats.get("num_threads")),
                "wall time": wall_text(run),
            }
        )
    return rows


def loader_rows(run: Run, benchmarks, results_root) -> list[dict]:
    r = run.result
    values = {"loader_ratio": r["loader_images_per_s"] / r["step_images_per_s"]}
    return [
        {
            "batch": str(r["batch_size"]),
            "loader only": f"{r['loader_images_per_s']:,.0f} images/s",
            "training step": f"{r['step_images_per_s']:,.0f} images/s ({r['model']})",
            "loader / step": f"{values['loader_ratio']:,.1f}x",
            "bf16 step (vs fp32)": bf16_text(r),
            "target": check_targets(run.b.cfg.bench.targets, values),
            **common_columns(run, "-"),
        }
    ]


def bf16_text(r: dict) -> str:
    """The bf16 autocast step rate against fp32, and whether this CPU has bf16 natively."""
    if "bf16_step_images_per_s" not in r:
        return "-"
    native = {True: ", native bf16", False: ", no native bf16: train.amp=bf16 runs fp32"}.get(r.get("native_bf16"), "")
    return f"{r['bf16_step_images_per_s']:,.0f} images/s ({r['bf16_speedup']:.2f}x){native}"


def quantize_rows(run: Run, benchmarks, results_root) -> list[dict]:
    """One row per scripts.quantize run: both ONNX files' accuracy (ONNX Runtime) and size."""
    r, c = run.result, run.result["calibration"]
    floats = r["float_nodes"]
    return [
        {
            "starts from": r["source"],
            "calibration": f"{c['method']}, {c['num_images']} train images, "
            f"{'per-channel' if c['per_channel_weights'] else 'per-tensor'} weights, {c['activations']} activations",
            "ORT top-1: FP32 -> INT8": f"{r['fp32']['top1']:.2f}% -> {r['int8']['top1']:.2f}%"
            + (" (QAT)" if r["int8"]["method"] == "qat" else ""),
            "drop (pts)": fmt(r["drop"], "+.2f"),
            "file MiB: FP32 -> INT8": f"{r['fp32']['size_bytes'] / 2**20:.3f} -> {r['int8']['size_bytes'] / 2**20:.3f} "
            f"({r['size_ratio']:.2f}x)",
            "ops left in FP32": ", ".join(n["op_type"] for n in floats) if floats else "none",
            "target": check_targets(run.b.cfg.bench.targets, {"drop": r["drop"]}),
            **common_columns(run, "-"),
        }
    ]


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
        values = {
            "drop": drop,
            "speedup": base_lat[largest]["median_ms"] / lat[largest]["median_ms"],
            "size_ratio": base["size_bytes"] / m["size_bytes"],
        }
        row = {
            "variant": f"{Path(m['onnx']).parent.name} {m['precision'].upper()}",
            "MACs": fmt(m["macs"] and m["macs"] / 1e6, ".2f", "M"),
            "file MiB (x smaller)": f"{m['size_bytes'] / 2**20:.3f} ({values['size_ratio']:.2f}x)",
            "ORT top-1": fmt(top1[i], ".2f", "%"),
            "drop (pts)": fmt(drop, "+.2f"),
        }
        for bs, stats in lat.items():
            row[f"median ms, batch {bs} (speed-up)"] = (
                f"{stats['median_ms']:.2f} ({base_lat[bs]['median_ms'] / stats['median_ms']:.2f}x)"
            )
        row["noise (p90 / median)"] = fmt(max(s["p90_ms"] / s["median_ms"] for s in lat.values()), ".2f")
        targets = run.b.cfg.bench.targets if i == len(models) - 1 else {}
        rows.append(
            row
            | {
                "target": check_targets(targets, values),
                "model": configs[i].get("model", {}).get("name", "-"),
                "data": data_text(configs[i]),
                "epochs": "-",
                "seed": "-",
                "device": device_text(run, "cpu", lat[largest].get("num_threads")),
                "wall time": wall_text(run),
            }
        )
    return rows


ROWS = {
    "train": train_rows,
    "prune_structured": structured_rows,
    "prune_unstructured": unstructured_rows,
    "profile": profile_rows,
    "loader_speed": loader_rows,
    "quantize": quantize_rows,
}


def pending_row(b: Benchmark, results_root: Path, cuda: bool) -> dict:
    """What the recipe says a row will be, before it has run."""
    if b.cfg.bench.device == "cuda" and not cuda:
        why = "needs a CUDA GPU"
    else:
        state = b.state(results_root)
        why = {
            "partial": "started, not finished",
            "stale": "stale, " + next((r for s in b.seeds if (r := b.stale_reason(results_root, s))), ""),
        }.get(state, "not run yet")
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
    """The rows of `table` that have results (at least one finished seed); the others are pending_rows'."""
    rows = []
    for b in benchmarks.values():
        if b.cfg.bench.table != table or not b.done_seeds(results_root):
            continue
        found = ROWS[b.script](read_row(b, results_root), benchmarks, results_root)
        if b.done_seeds(results_root) and not b.done(results_root):  # some seeds finished: say the row is not whole
            found = [
                row | {"target": f"partial, {len(b.done_seeds(results_root))} of {len(b.seeds)} seeds: {row['target']}"}
                for row in found
            ]
        rows += [{"benchmark": b.name, **row, "command": f"`{COMMAND.format(name=b.name)}`"} for row in found]
    return rows


def pending_rows(benchmarks: dict[str, Benchmark], results_root: Path, cuda: bool) -> list[dict]:
    """Rows defined in cfgs/bench/ with no finished run: what each will be, and why it has not run."""
    return [
        {
            "benchmark": b.name,
            "table": b.cfg.bench.table,
            **pending_row(b, results_root, cuda),
            "command": f"`{COMMAND.format(name=b.name)}`",
        }
        for b in benchmarks.values()
        if not b.done_seeds(results_root)
    ]


LAST_COLUMNS = ["model", "data", "epochs", "seed", "device", "wall time", "target", "command"]


def bench_table(rows: list[dict], order: list[str] | None = None) -> str:
    """Columns in order of first appearance (or of `order`), the LAST_COLUMNS at the end."""
    columns = list(dict.fromkeys(c for row in rows for c in row if c not in LAST_COLUMNS))
    if order:
        columns.sort(key=order.index)
    columns += [c for c in LAST_COLUMNS if any(c in row for row in rows)]
    return records_table(rows, columns)


SUMMARY = "summary"  # the block listing every row that has targets, and whether it met them
SUMMARY_COLUMNS = [
    "benchmark",
    "pruned model",
    "backend",
    "batch",
    "MACs reduction",
    "sparsity",
    "drop (pts)",
    "latency / MACs reduction",
    "loader / step",
    "epochs",
    "device",
    "wall time",
    "target",
]  # what it shows, in order


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
            rows, about = (
                bench_table(summary_rows(benchmarks, results_root, cuda, tables), ["table"] + SUMMARY_COLUMNS),
                "",
            )
        else:
            found = table_rows(benchmarks, table, results_root, cuda)
            rows = (
                bench_table(found)
                if found
                else f"No row of this table has run yet: see [{PENDING_DOC}]({PENDING_DOC})."
            )
            names = {row["benchmark"] for row in found}
            about = "\n\n".join(
                filter(
                    None,
                    [descriptions(benchmarks, names)]
                    + [op_account(benchmarks[n], results_root) for n in sorted(names)],
                )
            )
        block = (
            f"{start}\n<!-- generated by scripts.benchmark from the run folders: do not edit -->\n{rows}\n"
            + (f"\n{about}\n" if about else "")
            + end
        )
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip("\n") + f"\n\n## {table}\n\n{block}\n"
    return text if text.endswith("\n") else text + "\n"


OP_FILES = {
    "dense_fp32": "dense FP32",
    "pruned_fp32": "pruned FP32",
    "dense_int8": "dense INT8",
    "pruned_int8": "pruned INT8",
}


def op_account(b: Benchmark, results_root: Path) -> str:
    """Where the deployed files' time goes, for a row whose runs profiled them (metrics.yaml
    int8.op_profile, and int8.conv_profile where recorded): kernel ms per batch per ONNX Runtime
    operator, mean over the seeds, and per convolution shape for the first seed (shapes differ
    between seeds), each with its share of the file's time; '' for other rows."""
    seeds = b.done_seeds(results_root)
    runs = {s: read_run(b, results_root, s).result.get("int8") or {} for s in seeds}
    profiles = [r["op_profile"] for r in runs.values() if "op_profile" in r]
    if not profiles:
        return ""
    timed_on = next(iter(runs.values())).get("timed_on", "")
    text = (
        f"Where the time goes in `{b.name}`: ONNX Runtime's profiler, kernel ms per batch and the share of "
        f"each file's kernel time, mean of {len(profiles)} seed(s), profiled as the files were timed "
        f"({timed_on}). The profiler adds a little per node: read shares and ratios "
        "here, the latency in the interleaved timing above.\n\n" + ms_table(profiles, "operator")
    )
    shaped = next(((s, r["conv_profile"]) for s, r in runs.items() if "conv_profile" in r), None)
    if shaped:
        text += (
            f"\n\nThe convolutions of seed {shaped[0]}'s files by shape (input -> output channels, output size; "
            "share of the file's convolution time): a pruned layer that costs what the dense one of more "
            "channels does, or an INT8 one slower than its FP32 twin, is where the kernels lose the MACs "
            "removed.\n\n" + ms_table([shaped[1]], "convolution")
        )
    return text


def ms_table(profiles: list[dict], what: str) -> str:
    """One Markdown table of profiler rows ({file: [{op_type, time_ms}]}, one dict per seed): a row per
    op_type, a column per file, mean ms over the seeds with the share of the file's total; '-' where a
    file has none."""
    files = [f for f in OP_FILES if f in profiles[0]]
    ms = {f: {} for f in files}  # file -> op -> mean kernel ms per run
    for f in files:
        for op in dict.fromkeys(r["op_type"] for p in profiles for r in p[f]):
            ms[f][op] = statistics.mean(next((r["time_ms"] for r in p[f] if r["op_type"] == op), 0.0) for p in profiles)
    ops = sorted({op for f in files for op in ms[f]}, key=lambda op: (-max(ms[f].get(op, 0.0) for f in files), op))
    totals = {f: sum(ms[f].values()) for f in files}
    rows = [
        {what: op}
        | {
            OP_FILES[f]: f"{ms[f][op]:.2f} ({100 * ms[f][op] / totals[f]:.0f}%)" if ms[f].get(op) else "-"
            for f in files
        }
        for op in ops
    ]
    rows.append({what: f"all {what}s"} | {OP_FILES[f]: f"{totals[f]:.2f}" for f in files})
    return records_table(rows, [what, *(OP_FILES[f] for f in files)])


def descriptions(benchmarks: dict[str, Benchmark], names: set[str]) -> str:
    return "\n".join(f"- `{b.name}`: {b.description}" for b in benchmarks.values() if b.name in names and b.description)


PENDING_DOC = "benchmarks_pending.md"  # beside the doc: the rows defined but not run, out of the results


def render_pending(benchmarks: dict[str, Benchmark], results_root: Path, cuda: bool) -> str:
    rows = pending_rows(benchmarks, results_root, cuda)
    return (
        "# Benchmarks not run yet\n\n<!-- generated by scripts.benchmark from cfgs/bench/ and the run folders: "
        "do not edit -->\n\nRows defined in `cfgs/bench/` without a finished run, and why; each is one command. "
        "Their results go to [benchmarks.md](benchmarks.md) when they have run.\n\n"
        + (bench_table(rows, ["benchmark", "table"]) if rows else "None.")
        + "\n\n"
        + descriptions(benchmarks, {row["benchmark"] for row in rows})
        + "\n"
    )


def write_doc(benchmarks: dict[str, Benchmark], *, results_root: Path, doc: Path, cuda: bool) -> Path:
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    atomic_write_text(doc, render_doc(text, benchmarks, results_root, cuda))
    atomic_write_text(doc.with_name(PENDING_DOC), render_pending(benchmarks, results_root, cuda))
    return doc
