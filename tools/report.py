"""Plots and Markdown for sweeps and reports.

    uv run python -m scripts.report --runs results/pipeline/quickstart

    plot_pareto(rows, front, x="macs", y="top1", path=Path("pareto.png"), title="sweep")
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Atomic: a crash mid-save never leaves a truncated PNG that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    tmp.replace(path)
    return path


def plot_pareto(rows: list[dict], front: list[dict], *, x: str, y: str, path: Path, title: str,
                label_key: str = "point") -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    usable = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    ax.scatter([r[x] for r in usable], [r[y] for r in usable], color="tab:gray", label="runs")
    for r in usable:
        ax.annotate(str(r.get(label_key, "")), (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if front:
        ax.plot([r[x] for r in front], [r[y] for r in front], "o-", color="tab:red", label="Pareto frontier")
    ax.set(title=title, xlabel=x, ylabel=y)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
