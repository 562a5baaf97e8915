"""The report template's outer sections: Baseline results, Failure cases, Recommendations, and
final_comparison.csv, all derived from the run folders the report collected.

    uv run python -m scripts.report --runs results/train results/structured results/sensitivity

    rows, profiles = collect_runs(roots)                     # tools.reports.report
    parts = baseline_section(rows) + failure_section(rows, roots, out) + recommendation_section(rows, profiles)
    write_comparison_csv(rows, out / "final_comparison.csv")

Failure cases: runs whose accuracy drop exceeds their goal's max_accuracy_drop (structured.goal of
the run, the project default for runs without one), layers that collapsed (no weight left, or
channels cut to the max_pruning_ratio floor; prune_at_init points with layer collapse), and
sensitivity outliers (layers tolerating far less sparsity than the median layer). Recommendations
are sentences computed from the same table: the lowest drop at each FLOPs budget, round_to
ablations, and whether fewer FLOPs gave lower measured latency. FLOPs = 2 x MACs throughout.
"""

from __future__ import annotations

import csv
import os
import statistics
from pathlib import Path

from tools.core.io import atomic_write_text, read_yaml_mapping
from tools.core.run_folder import CONFIG, METRICS
from tools.measure.metrics import format_count
from tools.pruning.config import GoalConfig
from tools.reports.comparison import comparison_row, csv_text, run_method
from tools.reports.tables import values_table

PRUNED = ("unstructured", "structured")
_OUTLIER_GAP = 0.15  # sensitivity: a layer tolerating this much less sparsity than the median one


def _section(title: str, body: list[str]) -> list[str]:
    return [f"## {title}", ""] + (body or ["_No results for this section yet._", ""])


def _md(headers: list[str], rows: list[list]) -> list[str]:
    return [values_table(headers, rows), ""]


def _metrics(row: dict) -> dict:
    return read_yaml_mapping(Path(row["run"]) / METRICS) or {}


def _config(run: str | Path) -> dict:
    return read_yaml_mapping(Path(run) / CONFIG) or {}


def _name(row: dict) -> str:
    return Path(row["run"]).name


# ----------------------------------------------------------------------------- baseline
def baseline_section(rows: list[dict]) -> list[str]:
    """Trained baselines (train runs); without any, the baselines the prune runs measured."""
    trained = [r for r in rows if r["kind"] == "train"]
    body: list[str] = []
    if trained:
        body += _md(
            ["run", "model", "test top-1 %", "MACs", "FLOPs", "params", "epochs"],
            [
                [
                    _name(r),
                    r.get("model"),
                    r["top1"],
                    format_count(r["macs"]),
                    format_count(2 * r["macs"]),
                    format_count(_metrics(r).get("params", 0)),
                    r.get("epochs"),
                ]
                for r in trained
            ],
        )
    measured = {}
    for r in rows:
        if r["kind"] in PRUNED:
            m = _metrics(r)
            macs = m.get("baseline", {}).get("macs") or m.get("dense_macs")
            measured.setdefault((r.get("model"), r["baseline_top1"], macs), []).append(_name(r))
    if measured:
        body += ["Baselines as measured by the pruning runs (test top-1 before pruning):", ""]
        body += _md(
            ["model", "baseline top-1 %", "MACs", "FLOPs", "runs"],
            [
                [
                    model,
                    top1,
                    format_count(macs) if macs else "-",
                    format_count(2 * macs) if macs else "-",
                    ", ".join(names),
                ]
                for (model, top1, macs), names in measured.items()
            ],
        )
    return _section("Baseline results", body)


# ----------------------------------------------------------------------------- failures
def _goal(row: dict, metrics: dict) -> dict:
    if isinstance(metrics.get("goal"), dict):
        return metrics["goal"]
    goal = _config(row["run"]).get("structured", {}).get("goal", {})
    default = GoalConfig()
    return {
        "min_flops_reduction_pct": goal.get("min_flops_reduction_pct", default.min_flops_reduction_pct),
        "max_accuracy_drop": goal.get("max_accuracy_drop", default.max_accuracy_drop),
    }


def over_pruned(rows: list[dict]) -> list[dict]:
    """Pruned runs whose accuracy drop exceeds their goal's max_accuracy_drop."""
    out = []
    for r in rows:
        if r["kind"] in PRUNED:
            goal = _goal(r, _metrics(r))
            if r["accuracy_drop"] > goal["max_accuracy_drop"] + 1e-9:
                out.append(r | {"max_accuracy_drop": goal["max_accuracy_drop"]})
    return out


def collapsed_layer_rows(rows: list[dict], roots: list[Path]) -> list[list]:
    """[run, kind, layer(s), what happened] for every collapsed or floor-cut layer."""
    found = []
    for r in rows:
        m = _metrics(r)
        if r["kind"] == "unstructured":
            empty = [name for name, layer in (m.get("layers") or {}).items() if layer.get("nonzero") == 0]
            if empty:
                found.append([_name(r), "unstructured", ", ".join(empty), "no weight left (layer collapse)"])
        elif r["kind"] == "structured" and r.get("basis") == "dense":
            floor = 1 - _config(r["run"]).get("structured", {}).get("max_pruning_ratio", 0.8)
            cut = [
                f"{n} ({c['after']}/{c['before']})"
                for n, c in (m.get("channels") or {}).items()
                if c.get("before") and c["after"] / c["before"] <= floor + 0.05
            ]
            if cut:
                found.append(
                    [
                        _name(r),
                        "structured",
                        ", ".join(cut),
                        f"channels cut to the max_pruning_ratio floor ({100 * floor:.0f}% kept)",
                    ]
                )
    for results in sorted(p for root in roots for p in root.rglob("results.yaml")):
        for p in (read_yaml_mapping(results) or {}).get("points") or []:
            if isinstance(p, dict) and p.get("collapsed_layers"):
                found.append(
                    [
                        f"{results.parent.name}/{p.get('pruner')} c={p.get('compression')}",
                        "prune_at_init",
                        str(p.get("collapsed", "")).replace(";", ", "),
                        "no weight left (layer collapse)",
                    ]
                )
    return found


def sensitivity_outliers(roots: list[Path]) -> list[dict]:
    """Per sensitivity run: layers whose tolerated sparsity is _OUTLIER_GAP below the median layer,
    with their drop at the highest sparsity scanned."""
    out = []
    for metrics_path in sorted(p for root in roots for p in root.rglob(METRICS)):
        m = read_yaml_mapping(metrics_path) or {}
        per_layer = m.get("layer_sparsity")
        if "rule" not in m or not isinstance(per_layer, dict) or len(per_layer) < 3:
            continue
        median = statistics.median(per_layer.values())
        drops = _drops_at_max(metrics_path.parent / "sensitivity.csv")
        for layer, tolerated in sorted(per_layer.items(), key=lambda kv: kv[1]):
            if tolerated <= median - _OUTLIER_GAP:
                out.append(
                    {
                        "run": metrics_path.parent,
                        "layer": layer,
                        "tolerated": tolerated,
                        "median": median,
                        "drop_at_max": drops.get(layer),
                    }
                )
    return out


def _drops_at_max(path: Path) -> dict[str, tuple[float, float]]:
    """layer -> (highest sparsity scanned, its top-1 drop) from sensitivity.csv."""
    if not path.is_file():
        return {}
    best: dict[str, tuple[float, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            point = (float(row["sparsity"]), float(row["drop"]))
            if point[0] >= best.get(row["layer"], (-1.0, 0.0))[0]:
                best[row["layer"]] = point
    return best


def failure_section(rows: list[dict], roots: list[Path], out: Path) -> list[str]:
    body: list[str] = []
    failing = over_pruned(rows)
    if failing:
        body += ["Over-pruned: the accuracy drop exceeds the goal's limit.", ""]
        body += _md(
            ["run", "method", "sparsity / target", "FLOPs reduction %", "basis", "drop (pts)", "allowed (pts)"],
            [
                [
                    _name(r),
                    r["method"],
                    r.get("sparsity"),
                    r["flops_reduction_pct"],
                    r["basis"],
                    r["accuracy_drop"],
                    r["max_accuracy_drop"],
                ]
                for r in failing
            ],
        )
        png = plot_drops(rows, out / "failures.png")
        body += [f"![accuracy drop per run against its limit]({png.name})", ""]
    collapsed = collapsed_layer_rows(rows, roots)
    if collapsed:
        body += ["Collapsed layers (no weight left) and layers cut to the max_pruning_ratio floor:", ""]
        body += _md(["run", "kind", "layers", "what"], collapsed)
    outliers = sensitivity_outliers(roots)
    if outliers:
        body += [
            f"Sensitivity outliers: layers that tolerate at least {100 * _OUTLIER_GAP:.0f} points less sparsity "
            "than the median layer at the scan's accuracy rule (prune them less, or leave them dense).",
            "",
        ]
        body += _md(
            ["scan", "layer", "tolerated sparsity", "median layer", "drop at the highest sparsity scanned"],
            [
                [
                    o["run"].name,
                    o["layer"],
                    o["tolerated"],
                    o["median"],
                    f"{o['drop_at_max'][1]:.2f} pts at {o['drop_at_max'][0]:g}" if o["drop_at_max"] else "-",
                ]
                for o in outliers
            ],
        )
        for scan in dict.fromkeys(o["run"] for o in outliers):
            if (scan / "sensitivity.png").is_file():
                body += [f"![sensitivity of {scan.name}]({os.path.relpath(scan / 'sensitivity.png', out)})", ""]
    if not body and any(r["kind"] in PRUNED for r in rows):
        body = ["No pruned run exceeds its accuracy-drop limit, no layer collapsed, no sensitivity outlier.", ""]
    return _section("Failure cases", body)


def plot_drops(rows: list[dict], path: Path) -> Path:
    from tools.core.plots import pyplot, save_figure

    pruned = [r | {"limit": _goal(r, _metrics(r))["max_accuracy_drop"]} for r in rows if r["kind"] in PRUNED]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(pruned)), 4))
    colors = ["tab:red" if r["accuracy_drop"] > r["limit"] else "tab:green" for r in pruned]
    ax.bar(range(len(pruned)), [r["accuracy_drop"] for r in pruned], color=colors)
    ax.plot(range(len(pruned)), [r["limit"] for r in pruned], "k_", markersize=20, label="allowed drop")
    ax.set_xticks(range(len(pruned)), [_name(r) for r in pruned], rotation=60, ha="right", fontsize=7)
    ax.set(title="accuracy drop per run (red: over the limit)", ylabel="top-1 drop (pts)")
    ax.legend()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- recommendations
def best_per_budget(rows: list[dict]) -> list[str]:
    """The lowest accuracy drop in every 10-point FLOPs-reduction bucket, per basis."""
    buckets: dict[tuple[str, int], dict] = {}
    for r in rows:
        if r["kind"] in PRUNED:
            key = (r["basis"], int(round(r["flops_reduction_pct"] / 10) * 10))
            if key not in buckets or r["accuracy_drop"] < buckets[key]["accuracy_drop"]:
                buckets[key] = r
    lines = []
    for (basis, budget), r in sorted(buckets.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        met = {True: ", meets its goal", False: ", misses its goal"}.get(r.get("goal_met"), "")
        lines.append(
            f"- About {budget}% of {basis} FLOPs removed: **{r['method']}** ({r.get('sparsity')}) loses the "
            f"least, {r['accuracy_drop']:.2f} pts at {r['flops_reduction_pct']:.1f}% (`{_name(r)}`){met}."
        )
    return lines


def round_to_findings(rows: list[dict]) -> list[str]:
    """Structured runs equal but for structured.round_to: what the coarser rounding cost."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if r["kind"] == "structured":
            s = _config(r["run"]).get("structured", {})
            key = (r.get("model"), r["method"], str(r.get("sparsity")), r.get("finetune_epochs"))
            groups.setdefault(key, {})[s.get("round_to", 8)] = r
    lines = []
    for (model, method, target, _), by_round in groups.items():
        if len(by_round) < 2:
            continue
        ranked = sorted(by_round.items(), key=lambda kv: kv[1]["accuracy_drop"])
        figures = "; ".join(
            f"round_to {k}: drop {r['accuracy_drop']:.2f} pts, FLOPs -{r['flops_reduction_pct']:.1f}%"
            for k, r in sorted(by_round.items())
        )
        lines.append(
            f"- round_to on {model} {method} ({target}): {figures}. Prefer round_to {ranked[0][0]} for "
            "accuracy; a larger round_to only pays where latency rewards aligned widths (see below)."
        )
    return lines


def latency_findings(profiles: list[dict]) -> list[str]:
    rows = [r for p in profiles for r in p.get("flops_vs_latency", [])]
    if not rows:
        return []
    best = max(rows, key=lambda r: r["speedup"])
    lines = [
        f"- Largest measured speed-up: {best['speedup']:.2f}x for `{best['model']}` on {best['backend']} at batch "
        f"{best['batch_size']} (FLOPs -{best['flops_reduction_pct']:.1f}%, latency -{best['latency_reduction_pct']:.1f}%)."
    ]
    weak = [
        r for r in rows if r["flops_reduction_pct"] > 0 and r["latency_reduction_pct"] < 0.5 * r["flops_reduction_pct"]
    ]
    for r in weak:
        lines.append(
            f"- FLOPs did not become latency for `{r['model']}` on {r['backend']} at batch {r['batch_size']}: "
            f"FLOPs -{r['flops_reduction_pct']:.1f}%, latency -{r['latency_reduction_pct']:.1f}%. {r['explanation']}"
        )
    return lines


def recommendation_section(rows: list[dict], profiles: list[dict]) -> list[str]:
    lines = best_per_budget(rows) + round_to_findings(rows) + latency_findings(profiles)
    if not any("round_to" in line for line in lines) and any(r["kind"] == "structured" for r in rows):
        lines.append(
            "- No round_to ablation among these runs: rerun one with `--set structured.round_to=16` (or 1) to "
            "measure what hardware-aligned widths cost in accuracy and gain in latency."
        )
    return _section("Recommendations", lines + [""] if lines else [])


# ----------------------------------------------------------------------------- the CSV
def comparison_rows(rows: list[dict]) -> list[dict]:
    """final_comparison.csv rows (tools.reports.comparison.COLUMNS), one per pruned run."""
    out = []
    for r in rows:
        if r["kind"] not in PRUNED:
            continue
        m = _metrics(r)
        method, sparsity = run_method(m, _name(r), 0.0)
        # summarize_run set the verdict by goal_verdict's rule (None = n/a: masks only), as report.md shows it
        out.append(
            comparison_row(
                method,
                sparsity,
                {
                    "flops_reduction_pct": r["flops_reduction_pct"],
                    "accuracy_drop": r["accuracy_drop"],
                    "goal_met": r.get("goal_met"),
                },
            )
        )
    return out


def write_comparison_csv(rows: list[dict], path: Path) -> Path:
    atomic_write_text(path, csv_text(comparison_rows(rows), header=True))
    return path
