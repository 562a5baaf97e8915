"""A model against its baseline, and the comparison CSV of the bootcamp's week 3.

    uv run python -m scripts.eval --checkpoint results/structured/l2_macs0.5/pruned_model.pth \
        --baseline-metrics results/train/cifar10_resnet20/metrics.yaml --append-csv results/final_comparison.csv

    baseline = model_figures(read_yaml_mapping(path), source=str(path))   # any metrics file the project writes
    vs = versus_baseline(baseline, eval_report, goal={"min_flops_reduction_pct": 40.0, "max_accuracy_drop": 1.5})
    append_csv_row(Path("results/final_comparison.csv"), comparison_row("structured l2", 0.5, vs))

`model_figures` reads the figures of the model a metrics file describes: eval's eval_metrics.yaml,
train's metrics.yaml (test top-1 of the best checkpoint), and a prune run's metrics.yaml (its pruned,
fine-tuned model). The CSV has the documented columns COLUMNS: FLOPs_Reduction in percent (FLOPs =
2 x MACs, so it equals the MACs reduction), Accuracy_Drop in top-1 points, Goal_Met True/False, or
n/a for a masked model whose dense FLOPs did not fall (goal_verdict: the same rule as report.md).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from tools.core.errors import UserError
from tools.measure.metrics import normalize_metrics
from tools.pruning.structured import goal_line, goal_verdict

COLUMNS = ("Method", "Sparsity", "FLOPs_Reduction", "Accuracy_Drop", "Goal_Met")
# Above this fraction of zero weights the FLOPs that matter are the non-zero ones (masks).
_SPARSE_MODEL = 0.01


def model_figures(metrics: dict, source: str) -> dict:
    """top1/top5/macs/params (and non-zero MACs/params where known) of the model `metrics` describes."""
    if "pruned" in metrics and "pruned_top1" in metrics:  # prune_structured
        pruned = metrics["pruned"]
        return {**pruned, "top1": metrics["pruned_top1"], "top5": pruned.get("top5")}
    if "finetuned_top1" in metrics:  # prune_unstructured: masks leave dense MACs as they were
        return {
            "top1": metrics["finetuned_top1"],
            "top5": metrics.get("finetuned_top5"),
            "macs": metrics["dense_macs"],
            "params": metrics["params"],
            "nonzero_macs": metrics["nonzero_macs"],
            "nonzero_params": metrics["nonzero_params"],
        }
    if "test_top1" in metrics:  # train
        return {
            "top1": metrics["test_top1"],
            "top5": metrics.get("test_top5"),
            "macs": metrics.get("macs"),
            "params": metrics.get("params"),
        }
    if "top1" in metrics:  # eval
        return dict(metrics)
    raise UserError(
        f"{source} has no accuracy the project writes (top1, test_top1, pruned_top1 or finetuned_top1); "
        "pass the metrics.yaml of a train or prune run, or an eval_metrics.yaml"
    )


def test_set_of(metrics: dict) -> dict | None:
    """The test set a metrics file's accuracy was measured on: its `test_set` record
    (tools.measure.describe.test_set_record), else the image count of an eval_metrics.yaml
    written before that record existed; None when the file does not say."""
    if isinstance(metrics.get("test_set"), dict):
        return metrics["test_set"]
    if "top1" in metrics and isinstance(metrics.get("num_samples"), int):
        return {"test_images": metrics["num_samples"]}
    return None


def check_same_test_set(baseline: dict | None, current: dict, source: str) -> None:
    """UserError unless the baseline's accuracy comes from the same test set as `current`'s:
    a drop between two different test sets is not a drop."""
    fix = "evaluate both on the same test set (same data set and data.test_subset)"
    if baseline is None or "test_images" not in baseline:
        raise UserError(
            f"baseline metrics {source} do not record how many test images they were measured on "
            f"(written by an older version); re-evaluate the baseline with scripts.eval --checkpoint "
            f"<its checkpoint> --save-dir DIR and pass DIR/eval_metrics.yaml"
        )
    if baseline["test_images"] != current["test_images"]:
        raise UserError(
            f"baseline metrics {source} were measured on {baseline['test_images']:,} test images, this "
            f"model on {current['test_images']:,}; {fix}"
        )
    for key in ("data", "test_subset", "subset_seed", "synthetic"):
        if key in baseline and key in current and baseline[key] != current[key]:
            raise UserError(
                f"baseline metrics {source} were measured on test set {key}={baseline[key]!r}, this model "
                f"on {key}={current[key]!r} ({current['test_images']:,} images each); {fix}"
            )


def versus_baseline(baseline: dict, current: dict, goal: dict) -> dict:
    """normalize_metrics(baseline, current) plus the FLOPs basis, the non-zero FLOPs reduction of
    a sparse (masked) model, and the goal verdict (on dense FLOPs: goal_verdict)."""
    vs = normalize_metrics(baseline, current)
    sparse = current.get("weight_sparsity", 0.0) >= _SPARSE_MODEL and current.get("nonzero_macs")
    vs["flops_basis"] = "nonzero" if sparse else "dense"
    if sparse:
        base_macs = baseline.get("nonzero_macs") or baseline.get("macs")
        if base_macs:
            vs["nonzero_flops_reduction_pct"] = 100.0 * (base_macs - current["nonzero_macs"]) / base_macs
    if vs.get("flops_reduction_pct") is not None and "accuracy_drop" in vs:
        vs["goal"] = dict(goal)
        # Judged on dense FLOPs only (goal_verdict): a masked model with none removed gets None ("n/a").
        vs["goal_met"] = goal_verdict(
            flops_reduction_pct=vs["flops_reduction_pct"],
            accuracy_drop=vs["accuracy_drop"],
            sparse=bool(sparse),
            **goal,
        )
    return vs


def format_versus(vs: dict, source: str, baseline_top1: float | None) -> str:
    """The block eval prints: drop, reductions (with their basis) and the goal line."""
    top1 = f", top-1 {baseline_top1:.2f}%" if baseline_top1 is not None else ""
    lines = [f"vs baseline ({source}{top1}):"]
    if "accuracy_drop" in vs:
        lines.append(f"  accuracy drop     {vs['accuracy_drop']:.2f} pts")
    if "flops_reduction_pct" in vs:
        lines.append(f"  FLOPs reduction   {vs['flops_reduction_pct']:.2f}% (dense; FLOPs = 2 x MACs)")
    if "nonzero_flops_reduction_pct" in vs:
        lines.append(
            f"  non-zero FLOPs reduction {vs['nonzero_flops_reduction_pct']:.2f}% (theoretical, sparse kernels)"
        )
    for key, label, unit in (
        ("params_reduction_pct", "params reduction", "%"),
        ("size_reduction_pct", "size reduction", "%"),
        ("speedup", "speed-up", "x"),
    ):
        if key in vs:
            lines.append(f"  {label:<17} {vs[key]:.2f}{unit}")
    if "goal_met" in vs:
        lines.append(f"  {goal_line(vs['goal_met'], **vs['goal'])} on dense FLOPs")
    return "\n".join(lines)


def run_method(run_metrics: dict | None, fallback: str, weight_sparsity: float) -> tuple[str, float]:
    """(Method, Sparsity) cells for a model from the metrics its run wrote: a structured run's
    Sparsity is its FLOPs target (or its channel ratio, said in Method), an unstructured run's
    its weight sparsity; anything else is named `fallback` with its measured weight sparsity."""
    m = run_metrics or {}
    if "goal_met" in m and "method" in m:
        granularity = "" if m.get("granularity", "channel") == "channel" else f" {m['granularity']}"
        if m.get("target_macs_reduction"):
            return f"structured {m['method']}{granularity}", float(m["target_macs_reduction"])
        return f"structured {m['method']}{granularity} (channel ratio)", float(m.get("pruning_ratio") or 0.0)
    if "target_sparsity" in m and "method" in m:
        return f"unstructured {m['method']} ({m.get('mode', '')})".replace(" ()", ""), float(m["actual_sparsity"])
    if "test_top1" in m:
        return "baseline", 0.0
    if "pruner" in m:
        return f"prune_at_init {m['pruner']}", float(m.get("sparsity", weight_sparsity))
    return fallback, weight_sparsity


def comparison_row(method: str, sparsity: float, vs: dict) -> dict:
    """One CSV row in COLUMNS; the FLOPs reduction on the basis the goal used."""
    flops = vs.get("nonzero_flops_reduction_pct", vs.get("flops_reduction_pct"))
    return {
        "Method": method,
        "Sparsity": round(float(sparsity), 4),
        "FLOPs_Reduction": None if flops is None else round(flops, 2),
        "Accuracy_Drop": None if vs.get("accuracy_drop") is None else round(vs["accuracy_drop"], 2),
        "Goal_Met": "n/a" if vs.get("goal_met") is None else vs["goal_met"],
    }


def csv_text(rows: list[dict], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def append_csv_row(path: Path, row: dict) -> None:
    """Appends `row`, writing the header first when the file is new or empty. One write() on an
    O_APPEND descriptor, so concurrent appenders never interleave within a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.is_file() or path.stat().st_size == 0
    if not fresh:
        with open(path, newline="") as f:
            first = f.readline().strip()
        if first != ",".join(COLUMNS):
            raise UserError(
                f"{path} starts with {first!r}, not the columns {','.join(COLUMNS)}; pass another --append-csv file"
            )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, csv_text([row], header=fresh).encode())
    finally:
        os.close(fd)


def pareto_front(rows: list[dict], *, maximize: str, minimize: str) -> list[dict]:
    """Rows not dominated by any other (at least as good on both keys, better on one), sorted
    by cost. Rows lacking either key are ignored.

    >>> rows = [{"top1": 90, "macs": 10}, {"top1": 85, "macs": 12}, {"top1": 80, "macs": 5}]
    >>> pareto_front(rows, maximize="top1", minimize="macs")
    [{'top1': 80, 'macs': 5}, {'top1': 90, 'macs': 10}]
    """
    usable = [r for r in rows if r.get(maximize) is not None and r.get(minimize) is not None]
    front = [
        r
        for r in usable
        if not any(
            o[maximize] >= r[maximize]
            and o[minimize] <= r[minimize]
            and (o[maximize] > r[maximize] or o[minimize] < r[minimize])
            for o in usable
        )
    ]
    return sorted(front, key=lambda r: (r[minimize], -r[maximize]))
