"""Collect run folders into report.md with tables and plots.

    uv run python -m scripts.report --runs results/pipeline/quickstart
    uv run python -m scripts.report --runs results/unstructured results/structured --out results/report

Reads every metrics.yaml (train, prune_unstructured, prune_structured runs) and profile.yaml
under the given folders; whatever is missing is left out with a note, so a report of partial
results still renders. Writes report.md and its PNGs into --out (default: the first folder).
"""

from __future__ import annotations

from pathlib import Path

from tools.cli import _Parser
from tools.errors import UserError, run_cli
from tools.io import atomic_write_text
from tools.report import (
    ablation_table,
    collect_runs,
    comparison_table,
    latency_table,
    plot_curves,
    plot_layer_bars,
    plot_pareto,
    read_yaml,
)
from tools.sweep import pareto_front


def parse_args(argv):
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="folders holding run folders")
    parser.add_argument("--out", help="where report.md and its PNGs go (default: the first --runs folder)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    roots = [Path(r) for r in args.runs]
    for root in roots:
        if not root.is_dir():
            raise UserError(f"run folder {root} not found; pass folders written by the scripts, e.g. results/pipeline/quickstart")
    out = Path(args.out) if args.out else roots[0]
    path = write_report(roots, out)
    print(f"wrote {path}")


def write_report(roots: list[Path], out: Path) -> Path:
    rows, profiles = collect_runs(roots)
    if not rows and not profiles:
        raise UserError(f"no run results (metrics.yaml / profile.yaml) under {', '.join(map(str, roots))}; run a script first")
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# Pruning report", "", f"Runs collected from: {', '.join(f'`{r}`' for r in roots)}. "
             "Accuracies are test top-1 (%); FLOPs = 2 x MACs; a reduction's basis says whether it is of dense "
             "FLOPs (a physically smaller model) or of non-zero FLOPs (theoretical, needs sparse kernels).", ""]
    parts += section("Method comparison", comparison_table(rows) if any(r["kind"] != "train" for r in rows) else None)
    parts += section("Ablation by sparsity (accuracy drop, points)", ablation_table(rows, "sparsity", "sparsity"))
    parts += section("Ablation by fine-tune budget (accuracy drop, points)",
                     ablation_table(rows, "finetune_epochs", "epochs"))
    parts += section("FLOPs vs measured latency", latency_table(profiles))
    parts += figures(rows, roots, out)
    report = out / "report.md"
    atomic_write_text(report, "\n".join(parts) + "\n")
    return report


def section(title: str, body: str | None) -> list[str]:
    return [f"## {title}", "", body if body else "_No results for this section yet._", ""]


def figures(rows: list[dict], roots: list[Path], out: Path) -> list[str]:
    lines = ["## Figures", ""]
    usable = [r | {"point": Path(r["run"]).name} for r in rows if r.get("macs") and r.get("top1") is not None]
    if usable:
        front = pareto_front(usable, maximize="top1", minimize="macs")
        png = plot_pareto(usable, front, x="macs", y="top1", path=out / "pareto.png",
                          title="accuracy vs MACs (non-zero MACs for unstructured runs)")
        lines += [f"![Pareto]({png.name})", ""]
    logs = [(str(log.parent.relative_to(root)), log) for root in roots for log in sorted(root.rglob("log.csv"))]
    png = plot_curves(logs, out / "curves.png")
    if png:
        lines += [f"![training and fine-tuning curves]({png.name})", ""]
    sparsity = {Path(r["run"]).name: (read_yaml(Path(r["run"]) / "metrics.yaml") or {}).get("layer_sparsity", {})
                for r in rows if r["kind"] == "unstructured"}
    png = plot_layer_bars({k: v for k, v in sparsity.items() if v}, ylabel="sparsity", title="per-layer sparsity",
                          path=out / "layer_sparsity.png")
    if png:
        lines += [f"![per-layer sparsity]({png.name})", ""]
    channels = {}
    for r in rows:
        if r["kind"] == "structured":
            table = (read_yaml(Path(r["run"]) / "metrics.yaml") or {}).get("channels", {})
            channels[Path(r["run"]).name] = {n: c["after"] / c["before"] for n, c in table.items() if c.get("before")}
    png = plot_layer_bars({k: v for k, v in channels.items() if v}, ylabel="fraction of channels kept",
                          title="per-layer channels kept", path=out / "channels.png")
    if png:
        lines += [f"![per-layer channels kept]({png.name})", ""]
    for hist in sorted(p for root in roots for p in root.rglob("layer_weights.png")):
        lines += [f"Weight histograms and sparsity of `{hist.parent.name}`: `{hist}`", ""]
    return lines


if __name__ == "__main__":
    run_cli(main)
