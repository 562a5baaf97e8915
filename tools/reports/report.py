"""Plots and Markdown for sweeps and reports.

uv run python -m scripts.report --runs results/pipeline/quickstart

plot_pareto(rows, front, x="macs", y="top1", path=Path("pareto.png"), title="sweep")
"""

from __future__ import annotations

from pathlib import Path

from tools.core.errors import UserError
from tools.core.io import atomic_write_text, read_yaml_mapping
from tools.core.plots import axis, pyplot, save_figure, spread_labels
from tools.core.run_folder import CONFIG, LOG_CSV, METRICS, PROFILE, QUANTIZE_RECORD, REPORT
from tools.pruning.structured import verdict_text
from tools.reports import findings
from tools.reports.comparison import pareto_front
from tools.reports.deployment import target_table
from tools.reports.tables import values_table


def plot_pareto(
    rows: list[dict], front: list[dict], *, x: str, y: str, path: Path, title: str, label_key: str = "point"
) -> Path:
    plt = pyplot()
    (x_label, x_scale), (y_label, y_scale) = axis(x), axis(y)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    usable = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    ax.scatter([x_scale * r[x] for r in usable], [y_scale * r[y] for r in usable], color="tab:gray", label="runs")
    spread_labels(ax, [(x_scale * r[x], y_scale * r[y], str(r.get(label_key, ""))) for r in usable])
    if front:
        ax.plot(
            [x_scale * r[x] for r in front],
            [y_scale * r[y] for r in front],
            "o-",
            color="tab:red",
            label="Pareto frontier",
        )
    ax.set(title=title, xlabel=x_label, ylabel=y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- collecting runs
def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Every folder under `roots` holding a metrics.yaml, or a profile.yaml."""
    found = set()
    for root in roots:
        for name in (METRICS, PROFILE):
            found.update(p.parent for p in root.rglob(name))
    return sorted(found)


def run_kind(metrics: dict) -> str:
    if "goal_met" in metrics:
        return "structured"
    if "target_sparsity" in metrics:
        return "unstructured"
    if "test_top1" in metrics and "epochs" in metrics:
        return "train"
    return "other"


def summarize_run(run_dir: Path, metrics: dict, config: dict | None) -> dict:
    """One comparable row per run: what was done, cost reduction (and on which basis), accuracy."""
    kind = run_kind(metrics)
    row = {"run": str(run_dir), "kind": kind, "model": (config or {}).get("model", {}).get("name")}
    if kind == "train":
        return row | {
            "method": "baseline",
            "top1": metrics["test_top1"],
            "macs": metrics["macs"],
            "epochs": metrics["epochs"],
        }
    if kind == "unstructured":
        dense, nonzero = metrics["dense_macs"], metrics["nonzero_macs"]
        return row | {
            "method": f"{metrics['method']} ({metrics['mode']})",
            "sparsity": round(metrics["actual_sparsity"], 3),
            "flops_reduction_pct": 100.0 * (1 - nonzero / dense),
            "basis": "non-zero (theoretical)",
            "baseline_top1": metrics["baseline_top1"],
            "top1": metrics["finetuned_top1"],
            "accuracy_drop": metrics["accuracy_drop"],
            "macs": nonzero,
            "goal_met": None,  # masks: no dense reduction
            "finetune_epochs": (config or {}).get("finetune", {}).get("epochs"),
        }
    if kind == "structured":
        return row | {
            "method": metrics["method"]
            + ("" if metrics.get("granularity", "channel") == "channel" else f" ({metrics['granularity']})"),
            "sparsity": _structured_target(metrics),
            "latency_reduction_pct": metrics.get("latency_reduction_pct"),
            "flops_reduction_pct": metrics["flops_reduction_pct"],
            "basis": "dense" if metrics.get("reduction_basis", "dense") == "dense" else "non-zero (theoretical)",
            "baseline_top1": metrics["baseline_top1"],
            "top1": metrics["pruned_top1"],
            "accuracy_drop": metrics["accuracy_drop"],
            # goal_verdict's rule: a verdict only on a dense reduction (kernel masks: n/a)
            "goal_met": metrics["goal_met"] if metrics.get("reduction_basis", "dense") == "dense" else None,
            "macs": metrics.get("pruned", {}).get("macs"),
            "finetune_epochs": metrics.get("finetune", {}).get("epochs"),
        }
    return row


def _structured_target(metrics: dict) -> str:
    latency, macs = metrics.get("latency") or {}, metrics.get("target_macs_reduction")
    if metrics.get("target_latency_reduction"):
        return f"latency -{metrics['target_latency_reduction']:g} ({latency.get('backend')}, batch {latency.get('batch_size')})"
    return f"MACs -{macs:g}" if macs else f"ratio {metrics.get('pruning_ratio')}"


def collect_runs(roots: list[Path]) -> tuple[list[dict], list[dict]]:
    """(run rows, profile results) from every run folder under `roots`; unreadable files are skipped."""
    rows, profiles = [], []
    for run_dir in find_run_dirs(roots):
        metrics = read_yaml_mapping(run_dir / METRICS)
        if metrics:
            row = summarize_run(run_dir, metrics, read_yaml_mapping(run_dir / CONFIG))
            if row["kind"] != "other":
                rows.append(row)
        profile = read_yaml_mapping(run_dir / PROFILE)
        if profile and profile.get("models"):
            profiles.append(profile | {"run": str(run_dir)})
    return rows, profiles


# ----------------------------------------------------------------------------- markdown
def comparison_table(rows: list[dict]) -> str:
    pruned = [r for r in rows if r["kind"] in ("unstructured", "structured")]
    pruned.sort(key=lambda r: (r["kind"], r["method"], str(r.get("sparsity"))))
    return values_table(
        [
            "kind",
            "method",
            "sparsity / target",
            "FLOPs reduction %",
            "basis",
            "measured latency reduction %",
            "baseline top-1 %",
            "top-1 %",
            "drop (pts)",
            "goal",
            "fine-tune epochs",
        ],
        [
            [
                r["kind"],
                r["method"],
                r.get("sparsity"),
                r["flops_reduction_pct"],
                r["basis"],
                r.get("latency_reduction_pct"),
                r["baseline_top1"],
                r["top1"],
                r["accuracy_drop"],
                verdict_text(r.get("goal_met")),
                r.get("finetune_epochs"),
            ]
            for r in pruned
        ],
    )


def ablation_table(rows: list[dict], by: str, label: str) -> str | None:
    """Accuracy drop of each method across the values of `by` (sparsity or fine-tune epochs)."""
    pruned = [r for r in rows if r["kind"] in ("unstructured", "structured") and r.get(by) is not None]
    values = sorted({r[by] for r in pruned}, key=str)
    methods = sorted({r["method"] for r in pruned})
    if len(values) < 2:
        return None  # an ablation needs at least two settings
    cells = {(r["method"], r[by]): r["accuracy_drop"] for r in pruned}
    return values_table(
        ["method"] + [f"{label} {v if not isinstance(v, float) else f'{v:g}'}" for v in values],
        [[m] + [cells.get((m, v)) for v in values] for m in methods],
    )


def flops_vs_latency_table(profiles: list[dict]) -> str | None:
    rows = [
        [
            r["model"],
            r["backend"],
            r["batch_size"],
            r["flops_reduction_pct"],
            r["latency_reduction_pct"],
            r["speedup"],
            r["explanation"],
        ]
        for p in profiles
        for r in p.get("flops_vs_latency", [])
    ]
    if not rows:
        return None
    return values_table(
        ["model", "backend", "batch", "FLOPs reduction %", "latency reduction %", "speed-up", "why"], rows
    )


def deployment_table(roots: list[Path], profiles: list[dict]) -> str | None:
    """Dense / pruned x FP32 / INT8: each quantize.yaml under `roots` (scripts.quantize) gives two
    ONNX files, shown with size, ONNX Runtime top-1 and, where a profile timed that file, latency."""
    latency = {
        Path(e["onnx"]).resolve(): e["latency"].get("onnxruntime", {})
        for p in profiles
        for e in p["models"]
        if "onnx" in e
    }
    batch_sizes = sorted({bs for by_batch in latency.values() for bs in by_batch})
    rows = []
    for path in sorted(p for root in roots for p in root.rglob(QUANTIZE_RECORD)):
        q = read_yaml_mapping(path)
        if not q or "fp32" not in q:
            continue
        for precision in ("fp32", "int8"):
            f = q[precision]
            timed = latency.get(Path(f["path"]).resolve(), {})
            rows.append(
                [
                    path.parent.name,
                    precision.upper(),
                    q["macs"] / 1e6 if q.get("macs") else None,
                    f["size_bytes"] / 2**20,
                    f["top1"],
                    q["fp32"]["top1"] - f["top1"],
                    *[timed[bs]["median_ms"] if bs in timed else None for bs in batch_sizes],
                ]
            )
    if not rows:
        return None
    return values_table(
        [
            "run",
            "precision",
            "MACs (M)",
            "file MiB",
            "ONNX Runtime top-1 %",
            "drop vs its FP32 (pts)",
            *[f"median ms, batch {bs}" for bs in batch_sizes],
        ],
        rows,
    )


# ----------------------------------------------------------------------------- plots
def plot_training_curves(log_files: list[tuple[str, Path]], path: Path) -> Path | None:
    """Validation top-1 per epoch of every training / fine-tuning log."""
    import csv

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for label, log in log_files:
        with open(log) as f:
            rows = [r for r in csv.DictReader(f) if r.get("val_top1")]
        if rows:
            ax.plot([int(r["epoch"]) for r in rows], [float(r["val_top1"]) for r in rows], marker=".", label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(title="validation top-1 per epoch", xlabel="epoch", ylabel="top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_layer_bars(series: dict[str, dict[str, float]], *, ylabel: str, title: str, path: Path) -> Path | None:
    """Grouped bars per layer: one series per run (per-layer sparsity, or channels kept)."""
    if not series:
        return None
    plt = pyplot()
    layers = list(dict.fromkeys(name for values in series.values() for name in values))
    fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(layers)), 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(layers))], [values.get(n, 0) for n in layers], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], layers, rotation=90, fontsize=7)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- the report
def write_report(roots: list[Path], out: Path) -> Path:
    rows, profiles = collect_runs(roots)
    if not rows and not profiles:
        raise UserError(
            f"no run results (metrics.yaml / profile.yaml) under {', '.join(map(str, roots))}; run a script first"
        )
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "# Pruning report",
        "",
        f"Runs collected from: {', '.join(f'`{r}`' for r in roots)}. "
        "Accuracies are test top-1 (%); FLOPs = 2 x MACs; a reduction's basis says whether it is of dense "
        "FLOPs (a physically smaller model) or of non-zero FLOPs (theoretical, needs sparse kernels).",
        "",
    ]
    parts += findings.baseline_section(rows)
    parts += _section("Method comparison", comparison_table(rows) if any(r["kind"] != "train" for r in rows) else None)
    parts += _section("Ablation by sparsity (accuracy drop, points)", ablation_table(rows, "sparsity", "sparsity"))
    parts += _section(
        "Ablation by fine-tune budget (accuracy drop, points)", ablation_table(rows, "finetune_epochs", "epochs")
    )
    parts += _section("FLOPs vs measured latency", flops_vs_latency_table(profiles))
    by_target = target_table(rows, roots, profiles)  # the file to ship per target, beside the files above
    files = deployment_table(roots, profiles)
    parts += _section(
        "Deployment: FP32 and INT8 ONNX files on ONNX Runtime", "\n\n".join(filter(None, [files, by_target])) or None
    )
    parts += findings.failure_section(rows, roots, out)
    parts += findings.recommendation_section(rows, profiles)
    parts += _figures(rows, roots, out)
    findings.write_comparison_csv(rows, out / "final_comparison.csv")
    report = out / REPORT
    atomic_write_text(report, "\n".join(parts) + "\n")
    return report


def _section(title: str, body: str | None) -> list[str]:
    return [f"## {title}", "", body if body else "_No results for this section yet._", ""]


def _figures(rows: list[dict], roots: list[Path], out: Path) -> list[str]:
    lines = ["## Figures", ""]
    usable = [r | {"point": Path(r["run"]).name} for r in rows if r.get("macs") and r.get("top1") is not None]
    if usable:
        front = pareto_front(usable, maximize="top1", minimize="macs")
        png = plot_pareto(
            usable,
            front,
            x="macs",
            y="top1",
            path=out / "pareto.png",
            title="accuracy vs MACs (non-zero MACs for unstructured runs)",
        )
        lines += [f"![Pareto]({png.name})", ""]
    logs = [(str(log.parent.relative_to(root)), log) for root in roots for log in sorted(root.rglob(LOG_CSV))]
    png = plot_training_curves(logs, out / "curves.png")
    if png:
        lines += [f"![training and fine-tuning curves]({png.name})", ""]
    sparsity = {
        Path(r["run"]).name: (read_yaml_mapping(Path(r["run"]) / METRICS) or {}).get("layer_sparsity", {})
        for r in rows
        if r["kind"] == "unstructured"
    }
    png = plot_layer_bars(
        {k: v for k, v in sparsity.items() if v},
        ylabel="sparsity",
        title="per-layer sparsity",
        path=out / "layer_sparsity.png",
    )
    if png:
        lines += [f"![per-layer sparsity]({png.name})", ""]
    channels = {}
    for r in rows:
        if r["kind"] == "structured":
            table = (read_yaml_mapping(Path(r["run"]) / METRICS) or {}).get("channels", {})
            channels[Path(r["run"]).name] = {n: c["after"] / c["before"] for n, c in table.items() if c.get("before")}
    png = plot_layer_bars(
        {k: v for k, v in channels.items() if v},
        ylabel="fraction of channels kept",
        title="per-layer channels kept",
        path=out / "channels.png",
    )
    if png:
        lines += [f"![per-layer channels kept]({png.name})", ""]
    for hist in sorted(p for root in roots for p in root.rglob("layer_weights.png")):
        lines += [f"Weight histograms and sparsity of `{hist.parent.name}`: `{hist}`", ""]
    return lines


def report(args) -> None:
    """scripts.report's whole command: `args` as its parse_args returns them."""
    roots = [Path(r) for r in args.runs]
    for root in roots:
        if not root.is_dir():
            raise UserError(
                f"run folder {root} not found; pass folders written by the scripts, e.g. results/pipeline/quickstart"
            )
    out = Path(args.out) if args.out else roots[0]
    path = write_report(roots, out)
    print(f"wrote {path}")
